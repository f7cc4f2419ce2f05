package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A segment file is a sequence of frames, each one audit record:
//
//	length   uint32, little-endian: the record's size in bytes, 1 to MaxRecord
//	checksum uint32, little-endian: CRC-32C (Castagnoli) of the record
//	record   the event's canonical JSON record (audit.Event.MarshalRecord)
//
// Segments are preallocated, so the frames are followed by zero bytes: a length of zero
// ends the segment's data.

// MaxRecord bounds one record in the journal. An audit event is far smaller (captured
// content is capped well below this); a larger length is a damaged frame, not a record.
const MaxRecord = 16 << 20

const frameHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errEnd reports the end of a segment's data: a zero length, or no bytes left.
var errEnd = errors.New("end of data")

// appendFrame appends rec, framed, to buf.
func appendFrame(buf []byte, rec string) []byte {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(rec)))
	buf = append(buf, 0, 0, 0, 0)
	buf = append(buf, rec...)
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start+frameHeader:], castagnoli))
	return buf
}

// nextFrame decodes the frame at the start of b and returns its record and the bytes
// the frame takes. It returns errEnd at the end of the data and another error for a
// frame that is cut short or damaged.
func nextFrame(b []byte) (rec []byte, n int, err error) {
	if len(b) < 4 {
		if allZero(b) {
			return nil, 0, errEnd
		}
		return nil, 0, fmt.Errorf("frame header cut short at %d bytes", len(b))
	}
	size := binary.LittleEndian.Uint32(b)
	if size == 0 {
		return nil, 0, errEnd
	}
	if size > MaxRecord {
		return nil, 0, fmt.Errorf("frame length %d exceeds the limit of %d bytes", size, MaxRecord)
	}
	if len(b) < frameHeader+int(size) {
		return nil, 0, fmt.Errorf("frame of %d bytes cut short at %d", size, len(b)-frameHeader)
	}
	rec = b[frameHeader : frameHeader+int(size)]
	if sum := binary.LittleEndian.Uint32(b[4:]); sum != crc32.Checksum(rec, castagnoli) {
		return nil, 0, fmt.Errorf("frame checksum %08x does not match its record's %08x", sum, crc32.Checksum(rec, castagnoli))
	}
	return rec, frameHeader + int(size), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
