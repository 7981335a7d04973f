package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// generationColumns lists the columns of generations in the order that
// generationArgs and scanGeneration use, and generationTypes their SQL
// types, for backends that insert rows as one array per column.
var generationColumns, generationTypes = splitColumns([][2]string{
	{"id", "text"}, {"request_id", "text"}, {"user_id", "text"}, {"key_id", "text"},
	{"session_id", "text"}, {"conversation_id", "text"}, {"provider", "text"}, {"model", "text"},
	{"prompt", "bytea"}, {"response", "bytea"}, {"reasoning", "bytea"}, {"finish_reason", "text"},
	{"prompt_tokens", "integer"}, {"completion_tokens", "integer"}, {"reasoning_tokens", "integer"},
	{"tokens_estimated", "boolean"}, {"status", "integer"}, {"error_type", "text"}, {"attempts", "jsonb"},
	{"latency_ms", "bigint"}, {"first_token_ms", "bigint"}, {"client_ip", "text"}, {"stream", "boolean"},
	{"created_at", "timestamptz"}, {"content_crypted", "boolean"},
})

// splitColumns splits name and type pairs into two lists.
func splitColumns(pairs [][2]string) (names, types []string) {
	for _, p := range pairs {
		names = append(names, p[0])
		types = append(types, p[1])
	}
	return names, types
}

// defaultGenerationLimit is the page size of Generations when the filter
// sets none.
const defaultGenerationLimit = 100

// columnBatchRows is the number of rows per statement of a ColumnInserter.
// Its statements bind one parameter per column, so PostgreSQL's limit of
// 65,535 parameters does not bound the row count.
const columnBatchRows = 1000

// InsertGenerations inserts gs in one transaction, with INSERT statements of
// up to Backend.MaxBatchRows rows, or of columnBatchRows rows bound as one
// array per column when the backend is a ColumnInserter. A row whose ID is already stored is
// skipped, so a batch may be replayed. A generation with an empty ID gets a
// new UUID and one with a zero CreatedAt the current time, in the slice
// itself.
//
// Prompt, Response and Reasoning are stored as bytes, because they may hold
// keyring ciphertext, which is not valid text.
func (s *Store) InsertGenerations(ctx context.Context, gs []store.Generation) error {
	if len(gs) == 0 {
		return nil
	}
	now := s.Now()
	for i := range gs {
		if gs[i].ID == "" {
			gs[i].ID = newID()
		}
		if gs[i].CreatedAt.IsZero() {
			gs[i].CreatedAt = now
		}
	}
	batch := max(1, s.b.MaxBatchRows(len(generationColumns)))
	ci, byColumn := s.b.(ColumnInserter)
	if byColumn {
		batch = columnBatchRows
	}
	err := s.b.InTx(ctx, func(q Querier) error {
		for start := 0; start < len(gs); start += batch {
			chunk := gs[start:min(start+batch, len(gs))]
			var query string
			var args []any
			var err error
			if byColumn {
				query = ci.ColumnInsert("generations", generationColumns, generationTypes, "ON CONFLICT (id) DO NOTHING")
				args, err = s.generationColumnArgs(ci, chunk)
			} else {
				query, args, err = s.insertGenerationsQuery(chunk)
			}
			if err != nil {
				return err
			}
			if _, err := q.Exec(ctx, query, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert %d generations: %w", len(gs), err)
	}
	return nil
}

func (s *Store) insertGenerationsQuery(gs []store.Generation) (string, []any, error) {
	var sb strings.Builder
	sb.WriteString("INSERT INTO generations (")
	sb.WriteString(strings.Join(generationColumns, ", "))
	sb.WriteString(") VALUES ")
	args := make([]any, 0, len(gs)*len(generationColumns))
	for i := range gs {
		row, err := s.generationArgs(&gs[i])
		if err != nil {
			return "", nil, err
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for j := range row {
			if j > 0 {
				sb.WriteString(", ")
			}
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(len(args) + j + 1))
		}
		sb.WriteByte(')')
		args = append(args, row...)
	}
	sb.WriteString(" ON CONFLICT (id) DO NOTHING")
	return sb.String(), args, nil
}

// ByteText is text that a column stores as bytes (bytea), because it may
// hold keyring ciphertext, which is not valid text.
type ByteText string

// generationColumnCount is the length of generationColumns.
const generationColumnCount = 25

// generationRefs returns pointers to the values of g's columns, in the
// order of generationColumns: *string, *ByteText, *int, *int64, *bool or
// *time.Time. attempts points to g.Attempts encoded. This is the one
// mapping from fields to columns: generationArgs takes the values from it
// for row statements, and generationColumnArgs the pointers for column
// arrays, which a backend binds without copying or boxing each value.
func generationRefs(g *store.Generation, attempts *string) [generationColumnCount]any {
	return [...]any{
		&g.ID, &g.RequestID, &g.UserID, &g.KeyID, &g.SessionID, &g.ConversationID,
		&g.Provider, &g.Model, (*ByteText)(&g.Prompt), (*ByteText)(&g.Response), (*ByteText)(&g.Reasoning),
		&g.FinishReason, &g.PromptTokens, &g.CompletionTokens, &g.ReasoningTokens,
		&g.TokensEstimated, &g.Status, &g.ErrorType, attempts, &g.LatencyMS,
		&g.FirstTokenMS, &g.ClientIP, &g.Stream, &g.CreatedAt, &g.ContentCrypted,
	}
}

// encodeAttempts returns g.Attempts as JSON text.
func encodeAttempts(g *store.Generation) (string, error) {
	b, err := json.Marshal(nonNil(g.Attempts))
	if err != nil {
		return "", fmt.Errorf("encode attempts of generation %q: %w", g.ID, err)
	}
	return string(b), nil
}

func (s *Store) generationArgs(g *store.Generation) ([]any, error) {
	attempts, err := encodeAttempts(g)
	if err != nil {
		return nil, err
	}
	refs := generationRefs(g, &attempts)
	args := make([]any, len(refs))
	for i, r := range refs {
		switch v := r.(type) {
		case *string:
			args[i] = *v
		case *ByteText:
			args[i] = textBytes(string(*v))
		case *int:
			args[i] = *v
		case *int64:
			args[i] = *v
		case *bool:
			args[i] = *v
		case *time.Time:
			args[i] = s.b.TimeArg(*v)
		default:
			return nil, fmt.Errorf("unsupported value type %T in column %s of generations", r, generationColumns[i])
		}
	}
	return args, nil
}

// generationColumnArgs returns the values of gs as one argument per
// column, built by ci from slices of pointers into gs.
func (s *Store) generationColumnArgs(ci ColumnInserter, gs []store.Generation) ([]any, error) {
	attempts := make([]string, len(gs))
	refs := make([][generationColumnCount]any, len(gs))
	for i := range gs {
		a, err := encodeAttempts(&gs[i])
		if err != nil {
			return nil, err
		}
		attempts[i] = a
		refs[i] = generationRefs(&gs[i], &attempts[i])
	}
	cols := make([]any, generationColumnCount)
	for j := range cols {
		var col any
		switch refs[0][j].(type) {
		case *string:
			col = pointers[string](refs, j)
		case *ByteText:
			col = pointers[ByteText](refs, j)
		case *int:
			col = pointers[int](refs, j)
		case *int64:
			col = pointers[int64](refs, j)
		case *bool:
			col = pointers[bool](refs, j)
		case *time.Time:
			col = pointers[time.Time](refs, j)
		}
		if col == nil {
			return nil, fmt.Errorf("unsupported value type %T in column %s of generations", refs[0][j], generationColumns[j])
		}
		if cols[j] = ci.ColumnArg(col); cols[j] == nil {
			return nil, fmt.Errorf("bind column %s of generations: the backend does not support %T", generationColumns[j], col)
		}
	}
	return cols, nil
}

// pointers returns the pointers of column j of refs, all *T because
// generationRefs returns the same types for every row.
func pointers[T any](refs [][generationColumnCount]any, j int) []*T {
	out := make([]*T, len(refs))
	for i := range refs {
		out[i] = refs[i][j].(*T)
	}
	return out
}

// Generations lists the generations that match f, newest first.
func (s *Store) Generations(ctx context.Context, f store.GenerationFilter) ([]store.Generation, error) {
	var where []string
	var args []any
	if f.UserID != "" {
		args = append(args, f.UserID)
		where = append(where, "user_id = $"+strconv.Itoa(len(args)))
	}
	if !f.Before.IsZero() {
		args = append(args, s.b.TimeArg(f.Before))
		where = append(where, "created_at < $"+strconv.Itoa(len(args)))
	}
	q := "SELECT " + strings.Join(generationColumns, ", ") + " FROM generations"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultGenerationLimit
	}
	args = append(args, limit)
	q += " ORDER BY created_at DESC, id DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.b.Reader().Query(ctx, q, args...)
	list, err := scanAll(rows, err, s.scanGeneration)
	if err != nil {
		return nil, fmt.Errorf("list generations: %w", err)
	}
	return list, nil
}

// CountGenerations returns the number of stored generations.
func (s *Store) CountGenerations(ctx context.Context) (int64, error) {
	var n int64
	if err := s.b.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM generations`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count generations: %w", err)
	}
	return n, nil
}

func (s *Store) scanGeneration(row Row) (store.Generation, error) {
	var g store.Generation
	var prompt, response, reasoning, attempts []byte
	err := row.Scan(&g.ID, &g.RequestID, &g.UserID, &g.KeyID, &g.SessionID, &g.ConversationID,
		&g.Provider, &g.Model, &prompt, &response, &reasoning, &g.FinishReason,
		&g.PromptTokens, &g.CompletionTokens, &g.ReasoningTokens, &g.TokensEstimated,
		&g.Status, &g.ErrorType, &attempts, &g.LatencyMS, &g.FirstTokenMS,
		&g.ClientIP, &g.Stream, s.b.TimeDest(&g.CreatedAt), &g.ContentCrypted)
	if err != nil {
		return store.Generation{}, err
	}
	g.Prompt, g.Response, g.Reasoning = string(prompt), string(response), string(reasoning)
	if err := json.Unmarshal(attempts, &g.Attempts); err != nil {
		return store.Generation{}, fmt.Errorf("decode attempts of generation %q: %w", g.ID, err)
	}
	if len(g.Attempts) == 0 {
		g.Attempts = nil
	}
	return g, nil
}

// textBytes returns s as a non-nil byte slice, because drivers bind a nil
// slice as NULL and the content columns are NOT NULL.
func textBytes(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return []byte(s)
}
