package inspect

// The sensors, as named in findings, configuration and policy facts.
const (
	SensorInjection = "injection"
	SensorSecret    = "secret"
	SensorPII       = "pii"
)

// Span is a half-open range [Start, End) of byte offsets into the text a sensor scanned.
type Span struct {
	Start, End int
}

// Finding is one thing a sensor found in a text.
type Finding struct {
	// Sensor is SensorInjection, SensorSecret or SensorPII.
	Sensor string
	// Kind says what was found: a secret rule ("aws_access_key"), a personal-data type
	// ("EMAIL", "CREDIT_CARD") or an injection signal ("instruction_override").
	Kind string
	// Span locates the finding in the scanned text.
	Span Span
	// Score is the sensor's confidence, from 0 to 1.
	Score float64
}
