package telemetry

import "strings"

// The sensors a detection is counted for (label sensor of
// chaperone_sensor_detections_total).
const (
	SensorInjection = "injection"
	SensorSecret    = "secret"
	SensorPII       = "pii"
	SensorEgress    = "egress"
)

// parseSensorNote reads one entry of an event's Sensors and says what the sensors
// detected: the sensor and, for secrets and personal data, the kind of secret or the
// type of personal data. ok is false for entries that record what the sensors did
// rather than found ("redacted:secret:2", "tokenize:pii:3", "sanitized:...",
// "detokenized:..."), that say content went unscanned ("result:unscanned",
// "args:unscanned"), that repeat an earlier detection ("session:injection:0.90": the
// injection was counted when the sensors found it), and for anything unknown.
//
// The formats counted are the ones internal/pipeline writes:
//
//	injection:SCORE[:SIGNALS]          injection in a result
//	prompt:injection:SCORE[:SIGNALS]   injection in the user's prompt
//	secret:KIND, args:secret:KIND      a credential in a result or the arguments
//	pii:TYPE, args:pii:TYPE            personal data in a result or the arguments
//	egress:denied:HOST                 a destination the tool may not reach
//
// kind is "" for injections and egress denials: a score, a signal list or a host never
// becomes a label value.
func parseSensorNote(note string) (sensor, kind string, ok bool) {
	if rest, found := strings.CutPrefix(note, "args:"); found {
		head, tail, _ := strings.Cut(rest, ":")
		switch head {
		case SensorSecret, SensorPII:
			return head, tail, true
		}
		return "", "", false
	}
	if rest, found := strings.CutPrefix(note, "prompt:"); found {
		if head, _, _ := strings.Cut(rest, ":"); head == SensorInjection {
			return SensorInjection, "", true
		}
		return "", "", false
	}
	head, tail, _ := strings.Cut(note, ":")
	switch head {
	case SensorInjection:
		return SensorInjection, "", true
	case SensorSecret, SensorPII:
		return head, tail, true
	case SensorEgress:
		if verdict, _, _ := strings.Cut(tail, ":"); verdict == "denied" {
			return SensorEgress, "", true
		}
	}
	return "", "", false
}
