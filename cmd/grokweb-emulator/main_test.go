package main

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestRunRejectsFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no accounts", []string{"-listen", "127.0.0.1:0"}, "no accounts"},
		{"unknown tier", []string{"-accounts", "a", "-tier", "gold"}, `invalid -tier "gold"`},
		{"zero chunks", []string{"-accounts", "a", "-chunks", "0"}, "invalid -chunks 0"},
		{"listen error", []string{"-accounts", "a", "-listen", "127.0.0.1:-1"}, "listen on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) = %v; want an error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestRunUnknownFlag(t *testing.T) {
	err := run([]string{"-bogus"})
	if !errors.Is(err, errUsage) {
		t.Errorf("run(-bogus) = %v; want errUsage", err)
	}
	if err := run([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v; want flag.ErrHelp", err)
	}
}
