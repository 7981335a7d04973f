package postgres

import (
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/grokproxy/grokproxy/internal/store/sqlstore"
)

// ColumnArg returns column, a slice of pointers that sqlstore builds, as an
// array that pgx encodes in binary. Each element is a struct of one
// pointer, which an interface holds without an allocation, and pgx reads
// its value through a Valuer interface. The usual []string or []int64
// would box every element into an interface, one allocation each.
func (backend) ColumnArg(column any) any {
	switch c := column.(type) {
	case []*string:
		return refArray[textRef](c, func(p *string) textRef { return textRef{p} })
	case []*sqlstore.ByteText:
		return refArray[byteRef](c, func(p *sqlstore.ByteText) byteRef { return byteRef{p} })
	case []*int:
		return refArray[intRef](c, func(p *int) intRef { return intRef{p} })
	case []*int64:
		return refArray[int64Ref](c, func(p *int64) int64Ref { return int64Ref{p} })
	case []*bool:
		return refArray[boolRef](c, func(p *bool) boolRef { return boolRef{p} })
	case []*time.Time:
		return refArray[timeRef](c, func(p *time.Time) timeRef { return timeRef{p} })
	}
	return nil
}

// refs is a one-dimensional array argument for pgx (pgtype.ArrayGetter).
type refs[T any] []T

func refArray[T, P any](ps []P, wrap func(P) T) refs[T] {
	out := make(refs[T], len(ps))
	for i, p := range ps {
		out[i] = wrap(p)
	}
	return out
}

func (a refs[T]) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

func (a refs[T]) Index(i int) any { return a[i] }

func (a refs[T]) IndexType() any {
	var zero T
	return zero
}

// Each element type below binds a nil pointer as NULL.

type textRef struct{ p *string }

func (r textRef) TextValue() (pgtype.Text, error) {
	if r.p == nil {
		return pgtype.Text{}, nil
	}
	return pgtype.Text{String: *r.p, Valid: true}, nil
}

type byteRef struct{ p *sqlstore.ByteText }

// BytesValue returns the text's bytes without a copy. pgx only reads them
// while it encodes the argument, and strings are never written to.
func (r byteRef) BytesValue() ([]byte, error) {
	if r.p == nil {
		return nil, nil
	}
	s := string(*r.p)
	if s == "" {
		return []byte{}, nil // empty, not NULL: the content columns are NOT NULL
	}
	return unsafe.Slice(unsafe.StringData(s), len(s)), nil
}

type intRef struct{ p *int }

func (r intRef) Int64Value() (pgtype.Int8, error) {
	if r.p == nil {
		return pgtype.Int8{}, nil
	}
	return pgtype.Int8{Int64: int64(*r.p), Valid: true}, nil
}

type int64Ref struct{ p *int64 }

func (r int64Ref) Int64Value() (pgtype.Int8, error) {
	if r.p == nil {
		return pgtype.Int8{}, nil
	}
	return pgtype.Int8{Int64: *r.p, Valid: true}, nil
}

type boolRef struct{ p *bool }

func (r boolRef) BoolValue() (pgtype.Bool, error) {
	if r.p == nil {
		return pgtype.Bool{}, nil
	}
	return pgtype.Bool{Bool: *r.p, Valid: true}, nil
}

// timeRef binds a zero time as NULL, as backend.TimeArg does.
type timeRef struct{ p *time.Time }

func (r timeRef) TimestamptzValue() (pgtype.Timestamptz, error) {
	if r.p == nil || r.p.IsZero() {
		return pgtype.Timestamptz{}, nil
	}
	return pgtype.Timestamptz{Time: r.p.UTC(), Valid: true}, nil
}
