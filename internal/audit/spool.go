package audit

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Spool file format. Each record is one frame: a 4-byte big-endian payload
// length, a 4-byte big-endian CRC-32C of the payload, then the payload, which
// is a spoolRecord as JSON. Frames are only appended. The file is
// emptied once a replay has committed every frame to the store.
const (
	frameHeaderBytes = 8
	// maxPayloadBytes bounds the length field. A larger value can only come
	// from a torn or corrupt header, so the scan stops there.
	maxPayloadBytes = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errTornFrame marks a frame cut short by a crash during a write.
var errTornFrame = errors.New("torn frame")

// spool is the local file that keeps audit records while the store is
// unreachable. It is not safe for concurrent use: the Writer calls it with
// flushMu held.
type spool struct {
	path     string
	maxBytes int64
	f        *os.File

	size    int64 // bytes in the file
	records int   // frames in the file
	// offset is the end of the frames that a replay has committed to the
	// store, and replayed is their count. Frames before offset stay in the
	// file until the whole file is committed.
	offset   int64
	replayed int
}

// frame is one record as read back from the file.
type frame struct {
	start   int64
	payload []byte
	valid   bool // the checksum matches
}

func (fr frame) bytes() int64 { return frameHeaderBytes + int64(len(fr.payload)) }

// spoolRecord is the JSON form of a record in the spool. Prompt, Response
// and Reasoning shadow the string fields of Generation as bytes, because
// they may hold keyring ciphertext, which JSON strings would not keep intact.
type spoolRecord struct {
	store.Generation
	Prompt    []byte
	Response  []byte
	Reasoning []byte
}

// encodeFrame returns the framed JSON form of g.
func encodeFrame(g store.Generation) ([]byte, error) {
	rec := spoolRecord{Generation: g,
		Prompt: []byte(g.Prompt), Response: []byte(g.Response), Reasoning: []byte(g.Reasoning)}
	rec.Generation.Prompt, rec.Generation.Response, rec.Generation.Reasoning = "", "", ""
	payload, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode audit record %q: %w", g.ID, err)
	}
	buf := make([]byte, frameHeaderBytes, frameHeaderBytes+len(payload))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[4:8], crc32.Checksum(payload, crcTable))
	return append(buf, payload...), nil
}

func decodeRecord(payload []byte) (store.Generation, error) {
	var rec spoolRecord
	if err := json.Unmarshal(payload, &rec); err != nil {
		return store.Generation{}, err
	}
	g := rec.Generation
	g.Prompt, g.Response, g.Reasoning = string(rec.Prompt), string(rec.Response), string(rec.Reasoning)
	return g, nil
}

// readFrame reads the frame that starts at offset start. It returns io.EOF at
// a clean end of file and errTornFrame when the file ends inside the frame or
// the header cannot be a frame.
func readFrame(r *bufio.Reader, start int64) (frame, error) {
	var hdr [frameHeaderBytes]byte
	n, err := io.ReadFull(r, hdr[:])
	if err == io.EOF {
		return frame{}, io.EOF
	}
	if err != nil {
		if n > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			return frame{}, errTornFrame
		}
		return frame{}, err
	}

	// A zero length never comes from encodeFrame, because JSON is never
	// empty. Zeros are what a crash can leave in a file extended but not
	// yet written.
	length := binary.BigEndian.Uint32(hdr[0:4])
	if length == 0 || length > maxPayloadBytes {
		return frame{}, errTornFrame
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return frame{}, errTornFrame
		}
		return frame{}, err
	}
	valid := crc32.Checksum(payload, crcTable) == binary.BigEndian.Uint32(hdr[4:8])
	return frame{start: start, payload: payload, valid: valid}, nil
}

// openSpool opens or creates the spool at path and scans it. A crash during
// a write can leave a torn frame, or a last frame whose checksum fails, at
// the end of the file, so openSpool cuts such a frame off. A bad frame in the
// middle stays, and the replay skips it.
func openSpool(path string, maxBytes int64) (*spool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit spool: %w", err)
	}
	s := &spool{path: path, maxBytes: maxBytes, f: f}
	if err := s.scan(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *spool) scan() error {
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, 1<<62), 1<<16)
	var end, lastStart int64
	records := 0
	lastValid := true
	for {
		fr, err := readFrame(r, end)
		if err == io.EOF || err == errTornFrame {
			break
		}
		if err != nil {
			return fmt.Errorf("read audit spool %q: %w", s.path, err)
		}
		lastStart, lastValid = end, fr.valid
		end += fr.bytes()
		records++
	}
	if records > 0 && !lastValid {
		end = lastStart
		records--
	}

	info, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat audit spool %q: %w", s.path, err)
	}
	if info.Size() != end {
		if err := s.truncate(end); err != nil {
			return err
		}
	}
	s.size, s.records = end, records
	return nil
}

// pending returns the number of records not yet committed to the store.
func (s *spool) pending() int { return s.records - s.replayed }

// fit returns how many of frames, taken from the start, fit under maxBytes.
func (s *spool) fit(frames [][]byte) int {
	size := s.size
	for i, fr := range frames {
		size += int64(len(fr))
		if size > s.maxBytes {
			return i
		}
	}
	return len(frames)
}

// append writes frames at the end of the file and syncs it. It ignores
// maxBytes, because the caller checks room with fit. On error the file is cut back
// to its former size, so a failed append leaves no partial frame.
func (s *spool) append(frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	var buf []byte
	for _, fr := range frames {
		buf = append(buf, fr...)
	}
	if _, err := s.f.Write(buf); err != nil {
		s.truncate(s.size)
		return fmt.Errorf("write audit spool %q: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		s.truncate(s.size)
		return fmt.Errorf("sync audit spool %q: %w", s.path, err)
	}
	s.size += int64(len(buf))
	s.records += len(frames)
	return nil
}

// next reads up to limit records that follow offset. It returns them, the
// end offset of the frames read and the number of frames read, which counts
// the frames whose checksum or JSON was bad and that were skipped.
func (s *spool) next(limit int) (gs []store.Generation, end int64, frames int, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, s.offset, s.size-s.offset), 1<<16)
	end = s.offset
	for frames < limit && end < s.size {
		fr, err := readFrame(r, end)
		if err != nil {
			return gs, end, frames, fmt.Errorf("read audit spool %q at offset %d: %w", s.path, end, err)
		}
		end += fr.bytes()
		frames++
		if !fr.valid {
			continue
		}
		g, err := decodeRecord(fr.payload)
		if err != nil {
			continue
		}
		gs = append(gs, g)
	}
	return gs, end, frames, nil
}

// commit marks the frames up to end as committed to the store. When no
// frame is left, the file is emptied.
func (s *spool) commit(end int64, frames int) error {
	s.offset = end
	s.replayed += frames
	if s.offset < s.size {
		return nil
	}
	if err := s.truncate(0); err != nil {
		return err
	}
	s.size, s.records, s.offset, s.replayed = 0, 0, 0, 0
	return nil
}

func (s *spool) truncate(size int64) error {
	if err := s.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate audit spool %q: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync audit spool %q: %w", s.path, err)
	}
	return nil
}

// rewrite replaces the file with the frames that keep accepts, in order.
// keep also learns whether the frame was already committed by a replay. The
// new file is written beside the old one and renamed over it, so a crash
// leaves either the old or the new file whole.
func (s *spool) rewrite(keep func(fr frame, committed bool) bool) error {
	tmpPath := s.path + ".tmp"
	tmp, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create audit spool %q: %w", tmpPath, err)
	}
	defer os.Remove(tmpPath) // fails harmlessly once the file is renamed

	var size, offset int64
	records, replayed := 0, 0
	w := bufio.NewWriterSize(tmp, 1<<16)
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, s.size), 1<<16)
	for pos := int64(0); pos < s.size; {
		fr, err := readFrame(r, pos)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("read audit spool %q at offset %d: %w", s.path, pos, err)
		}
		pos += fr.bytes()
		committed := pos <= s.offset
		if !keep(fr, committed) {
			continue
		}
		if err := writeFrame(w, fr); err != nil {
			tmp.Close()
			return fmt.Errorf("write audit spool %q: %w", tmpPath, err)
		}
		size += fr.bytes()
		records++
		if committed {
			offset, replayed = size, replayed+1
		}
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("write audit spool %q: %w", tmpPath, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync audit spool %q: %w", tmpPath, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close audit spool %q: %w", tmpPath, err)
	}
	return s.replace(tmpPath, size, records, offset, replayed)
}

// replace renames tmpPath over the spool and reopens it.
func (s *spool) replace(tmpPath string, size int64, records int, offset int64, replayed int) error {
	if err := os.Rename(tmpPath, s.path); err != nil {
		return fmt.Errorf("replace audit spool %q: %w", s.path, err)
	}
	syncDir(filepath.Dir(s.path))

	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("reopen audit spool %q: %w", s.path, err)
	}
	s.f.Close()
	s.f = f
	s.size, s.records, s.offset, s.replayed = size, records, offset, replayed
	return nil
}

func writeFrame(w io.Writer, fr frame) error {
	var hdr [frameHeaderBytes]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(fr.payload)))
	binary.BigEndian.PutUint32(hdr[4:8], crc32.Checksum(fr.payload, crcTable))
	if !fr.valid {
		// Keep a bad frame bad, so the replay still skips it.
		binary.BigEndian.PutUint32(hdr[4:8], ^crc32.Checksum(fr.payload, crcTable))
	}
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(fr.payload)
	return err
}

// syncDir makes a rename in dir durable. Errors are ignored: some file
// systems cannot sync a directory, and the rename itself has succeeded.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

func (s *spool) close() error { return s.f.Close() }
