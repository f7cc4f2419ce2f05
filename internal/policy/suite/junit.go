package suite

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit XML, in the shape CI systems read: testsuites > testsuite (one per suite file) >
// testcase (one per case). There are no timings, so the same results give the same bytes.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes results as JUnit XML. A suite that could not be run is a testsuite
// with one testcase, named after the file, holding an error.
func WriteJUnit(w io.Writer, results []Result) error {
	out := junitSuites{Name: "chaperone policy test", Suites: make([]junitSuite, 0, len(results))}
	for i := range results {
		r := &results[i]
		js := junitSuite{Name: r.Path}
		if r.Err != nil {
			msg := r.Err.Error()
			first, _, _ := strings.Cut(msg, "\n")
			js.Tests, js.Errors = 1, 1
			js.Cases = []junitCase{{
				Name: r.Path, Classname: r.Path, File: r.Path,
				Error: &junitProblem{Message: first, Type: "suite", Text: msg},
			}}
		}
		for j := range r.Cases {
			c := &r.Cases[j]
			jc := junitCase{Name: c.Name, Classname: r.Path, File: r.Path, Line: c.Line}
			if !c.Pass {
				msg := c.Message()
				jc.Failure = &junitProblem{Message: msg, Type: "mismatch", Text: fmt.Sprintf("%s:%d: %s: %s", r.Path, c.Line, c.Name, msg)}
				js.Failures++
			}
			js.Tests++
			js.Cases = append(js.Cases, jc)
		}
		out.Tests += js.Tests
		out.Failures += js.Failures
		out.Errors += js.Errors
		out.Suites = append(out.Suites, js)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}
