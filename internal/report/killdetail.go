package report

import (
	"regexp"
	"strconv"
)

// maxDetail bounds the kill.engaged detail parseKillDetail reads: the gateway writes a
// line, and anything longer was not written by it.
const maxDetail = 4096

// killDetailPattern matches the detail the gateway records with kill.engaged: "by WHO; N
// calls in flight cancelled, M held approvals voided, contained in D", possibly followed
// by more. The counts are written as %d writes them: no sign, no leading zero.
var killDetailPattern = regexp.MustCompile(`^by (.*?); (0|[1-9]\d{0,17}) calls in flight cancelled, (0|[1-9]\d{0,17}) held approvals voided`)

// killDetail is what a kill switch's detail says it did.
type killDetail struct {
	by                string
	cancelled, voided int64
}

// parseKillDetail reads the detail of a kill.engaged event; ok is false when it is not
// in the gateway's form (an older gateway, or an event written by something else), and
// the detail is then shown as it is.
func parseKillDetail(s string) (d killDetail, ok bool) {
	if len(s) > maxDetail {
		return killDetail{}, false
	}
	m := killDetailPattern.FindStringSubmatch(s)
	if m == nil {
		return killDetail{}, false
	}
	cancelled, err1 := strconv.ParseInt(m[2], 10, 64)
	voided, err2 := strconv.ParseInt(m[3], 10, 64)
	if err1 != nil || err2 != nil {
		return killDetail{}, false
	}
	return killDetail{by: m[1], cancelled: cancelled, voided: voided}, true
}
