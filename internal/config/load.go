package config

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load builds the configuration from the defaults, the YAML file at path
// (skipped when path is empty) and the environment read through getenv.
// Keys in the file are the environment variable names, in upper or lower
// case. The result is validated; every error names the setting at fault.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		if err := loadFile(&c, path); err != nil {
			return Config{}, err
		}
	}
	for _, s := range Settings {
		v, ok, err := lookup(s, getenv)
		if err != nil {
			return Config{}, err
		}
		if !ok {
			continue
		}
		if err := s.set(&c, v); err != nil {
			return Config{}, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// lookup reads NAME, or the file named by NAME_FILE for secrets. Setting
// both is an error, so an operator never wonders which one won.
func lookup(s Setting, getenv func(string) string) (string, bool, error) {
	v := getenv(s.Name)
	if !s.Secret {
		return v, v != "", nil
	}
	file := getenv(s.Name + "_FILE")
	if file == "" {
		return v, v != "", nil
	}
	if v != "" {
		return "", false, fmt.Errorf("%s: set either %s or %s_FILE, not both", s.Name, s.Name, s.Name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", false, fmt.Errorf("%s_FILE: %w", s.Name, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

func loadFile(c *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("config file %q: %w", path, err)
	}
	byName := make(map[string]Setting, len(Settings))
	for _, s := range Settings {
		byName[s.Name] = s
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := byName[strings.ToUpper(k)]
		if !ok {
			return fmt.Errorf("config file %q: unknown setting %q", path, k)
		}
		if err := s.set(c, fileValue(raw[k])); err != nil {
			return fmt.Errorf("%s (config file): %w", s.Name, err)
		}
	}
	return nil
}

// fileValue turns a YAML scalar or list into the text form the environment
// variable would hold.
func fileValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}
