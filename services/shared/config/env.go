// Package config reads typed settings from the environment.
package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads settings and remembers the first malformed one.
type Env struct {
	err error
}

// Err returns the first parse error.
func (e *Env) Err() error { return e.err }

// String returns $key or def.
func (e *Env) String(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// Int returns $key as an int or def.
func (e *Env) Int(key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s: %q is not an integer", key, v)
	}
	if err != nil {
		return def
	}
	return n
}

// Int64 returns $key as an int64 or def.
func (e *Env) Int64(key string, def int64) int64 {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		if e.err == nil {
			e.err = fmt.Errorf("%s: %q is not an integer", key, v)
		}
		return def
	}
	return n
}

// Duration returns $key as a duration ("90s") or a number of seconds, or def.
func (e *Env) Duration(key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		if e.err == nil {
			e.err = fmt.Errorf("%s: %q is not a duration", key, v)
		}
		return def
	}
	return d
}

// List returns $key split at commas, without empty items.
func (e *Env) List(key string) []string {
	var out []string
	for _, v := range strings.Split(os.Getenv(key), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Bool returns $key as a bool or def.
func (e *Env) Bool(key string, def bool) bool {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		if e.err == nil {
			e.err = fmt.Errorf("%s: %q is not a boolean", key, v)
		}
		return def
	}
	return b
}
