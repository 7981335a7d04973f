package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/grokproxy/grokproxy/internal/store"
)

// auditLockKey is the transaction lock that serialises appends to the
// audit chain.
const auditLockKey int64 = 0x67726f6b61756474 // "grokaudt"

// verifyPage is the number of audit rows VerifyAuditChain reads per query.
const verifyPage = 500

const auditColumns = `seq, id, at, actor, action, target, client_ip, request_id, details,
	prev_hash, hash`

// AppendAuditEvent appends e to the audit chain inside one transaction that
// holds the audit lock: it reads the hash of the last row, computes e's
// hash over that and e's canonical JSON, and inserts the row. An empty ID
// gets a new UUID and a zero At the current time. Seq, PrevHash and Hash are
// written back to e, and Details to its canonical form (numbers become
// float64, as JSON decoding gives them).
func (s *Store) AppendAuditEvent(ctx context.Context, e *store.AuditEvent) error {
	if e.ID == "" {
		e.ID = newID()
	}
	if e.At.IsZero() {
		e.At = s.Now()
	}
	e.At = Truncate(e.At)

	details, err := canonicalDetails(e.Details)
	if err != nil {
		return fmt.Errorf("encode details of audit event %q: %w", e.ID, err)
	}
	e.Details = nil
	if err := json.Unmarshal(details, &e.Details); err != nil {
		return fmt.Errorf("decode details of audit event %q: %w", e.ID, err)
	}
	if len(e.Details) == 0 {
		e.Details = nil
	}

	b := s.b
	err = b.InTx(ctx, func(q Querier) error {
		if err := b.LockTx(ctx, q, auditLockKey); err != nil {
			return fmt.Errorf("lock audit chain: %w", err)
		}
		prev := ""
		err := q.QueryRow(ctx, `SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&prev)
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("read chain head: %w", err)
		}

		e.PrevHash = prev
		e.Hash = chainHash(prev, e, details)
		return q.QueryRow(ctx, `INSERT INTO audit_events (id, at, actor, action, target,
			client_ip, request_id, details, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq`,
			e.ID, b.TimeArg(e.At), e.Actor, e.Action, e.Target, e.ClientIP, e.RequestID,
			string(details), e.PrevHash, e.Hash).Scan(&e.Seq)
	})
	if err != nil {
		return fmt.Errorf("append audit event %q: %w", e.ID, b.MapError(err))
	}
	return nil
}

// AuditEvents lists audit events newest first, a page at a time.
func (s *Store) AuditEvents(ctx context.Context, f store.AuditEventFilter) ([]store.AuditEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultAuditPage
	}
	q := `SELECT ` + auditColumns + ` FROM audit_events`
	args := []any{}
	if f.BeforeSeq > 0 {
		q += ` WHERE seq < $1`
		args = append(args, f.BeforeSeq)
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY seq DESC LIMIT $%d`, len(args))
	rows, err := s.b.Reader().Query(ctx, q, args...)
	list, err := scanAll(rows, err, func(r Row) (store.AuditEvent, error) {
		e, _, err := s.scanAuditEvent(r)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return list, nil
}

// VerifyAuditChain walks the chain in Seq order. A row breaks it when its
// PrevHash is not the Hash of the row before it (a row was deleted or
// edited there) or its Hash is not the hash of its own content (the row
// was edited). It stops at the first broken row.
//
// NOTE: deleting the newest rows leaves a shorter chain that is still
// intact; only a copy of the head hash kept elsewhere reveals it.
func (s *Store) VerifyAuditChain(ctx context.Context) (store.AuditCheck, error) {
	var check store.AuditCheck
	var after int64
	prev := ""
	for {
		type rowData struct {
			e       store.AuditEvent
			details []byte
		}
		rows, err := s.b.Reader().Query(ctx, `SELECT `+auditColumns+` FROM audit_events
			WHERE seq > $1 ORDER BY seq LIMIT $2`, after, verifyPage)
		page, err := scanAll(rows, err, func(r Row) (rowData, error) {
			e, details, err := s.scanAuditEvent(r)
			return rowData{e, details}, err
		})
		if err != nil {
			return check, fmt.Errorf("verify audit chain after seq %d: %w", after, err)
		}
		for _, rd := range page {
			check.Checked++
			e := rd.e
			switch {
			case e.PrevHash != prev:
				return broken(check, e, "prev_hash does not match the hash of the row before it"), nil
			case chainHash(prev, &e, rd.details) != e.Hash:
				return broken(check, e, "hash does not match the row's content"), nil
			}
			prev, after = e.Hash, e.Seq
		}
		if len(page) < verifyPage {
			return check, nil
		}
	}
}

func broken(c store.AuditCheck, e store.AuditEvent, reason string) store.AuditCheck {
	c.BrokenSeq, c.BrokenID, c.Reason = e.Seq, e.ID, reason
	return c
}

// scanAuditEvent returns the event and its details in canonical JSON.
func (s *Store) scanAuditEvent(r Row) (store.AuditEvent, []byte, error) {
	var e store.AuditEvent
	var raw []byte
	err := r.Scan(&e.Seq, &e.ID, s.b.TimeDest(&e.At), &e.Actor, &e.Action, &e.Target,
		&e.ClientIP, &e.RequestID, &raw, &e.PrevHash, &e.Hash)
	if err != nil {
		return store.AuditEvent{}, nil, err
	}
	var details map[string]any
	if err := json.Unmarshal(raw, &details); err != nil {
		// A row whose details are not JSON still hashes to something
		// that cannot match, so verification reports it.
		return e, raw, nil
	}
	canon, err := json.Marshal(nonNilMap(details))
	if err != nil {
		return e, raw, nil
	}
	if len(details) > 0 {
		e.Details = details
	}
	return e, canon, nil
}

// canonicalRow is the JSON form of an audit row that its hash covers. The
// field order is fixed by the struct, and details are canonical JSON.
type canonicalRow struct {
	ID        string          `json:"id"`
	AtMS      int64           `json:"at_ms"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Target    string          `json:"target"`
	ClientIP  string          `json:"client_ip"`
	RequestID string          `json:"request_id"`
	Details   json.RawMessage `json:"details"`
}

// chainHash returns hex(SHA-256(prev || canonical JSON of e)). details is
// e.Details in canonical JSON.
func chainHash(prev string, e *store.AuditEvent, details []byte) string {
	row, err := json.Marshal(canonicalRow{
		ID: e.ID, AtMS: e.At.UnixMilli(), Actor: e.Actor, Action: e.Action, Target: e.Target,
		ClientIP: e.ClientIP, RequestID: e.RequestID, Details: details,
	})
	if err != nil {
		// Only invalid details fail here; such a row never verifies.
		return ""
	}
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(row)
	return hex.EncodeToString(h.Sum(nil))
}

// canonicalDetails returns d as canonical JSON: object keys sorted, numbers
// as float64 gives them, so that the text is the same after any database
// has stored and returned it.
func canonicalDetails(d map[string]any) ([]byte, error) {
	raw, err := json.Marshal(nonNilMap(d))
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return json.Marshal(nonNilMap(v))
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
