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
				args, err = s.generationColumnArgs(chunk)
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

// generationColumnArgs returns the rows of generationArgs as one typed
// slice per column, for a ColumnInserter's statement.
func (s *Store) generationColumnArgs(gs []store.Generation) ([]any, error) {
	rows := make([][]any, len(gs))
	for i := range gs {
		row, err := s.generationArgs(&gs[i])
		if err != nil {
			return nil, err
		}
		rows[i] = row
	}
	cols := make([]any, len(generationColumns))
	for j := range cols {
		var ok bool
		switch rows[0][j].(type) {
		case string:
			cols[j], ok = column[string](rows, j)
		case []byte:
			cols[j], ok = column[[]byte](rows, j)
		case int:
			cols[j], ok = column[int](rows, j)
		case int64:
			cols[j], ok = column[int64](rows, j)
		case bool:
			cols[j], ok = column[bool](rows, j)
		case time.Time:
			cols[j], ok = column[time.Time](rows, j)
		}
		if !ok {
			return nil, fmt.Errorf("unsupported value types in column %s of generations (the first is %T)", generationColumns[j], rows[0][j])
		}
	}
	return cols, nil
}

// column returns the values of column j of rows, and false when one of them
// is not a T.
func column[T any](rows [][]any, j int) ([]T, bool) {
	out := make([]T, len(rows))
	for i, row := range rows {
		v, ok := row[j].(T)
		if !ok {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func (s *Store) generationArgs(g *store.Generation) ([]any, error) {
	attempts, err := json.Marshal(nonNil(g.Attempts))
	if err != nil {
		return nil, fmt.Errorf("encode attempts of generation %q: %w", g.ID, err)
	}
	return []any{
		g.ID, g.RequestID, g.UserID, g.KeyID, g.SessionID, g.ConversationID,
		g.Provider, g.Model, textBytes(g.Prompt), textBytes(g.Response), textBytes(g.Reasoning),
		g.FinishReason, g.PromptTokens, g.CompletionTokens, g.ReasoningTokens,
		g.TokensEstimated, g.Status, g.ErrorType, string(attempts), g.LatencyMS,
		g.FirstTokenMS, g.ClientIP, g.Stream, s.b.TimeArg(g.CreatedAt), g.ContentCrypted,
	}, nil
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
