package main

// The journal: every provider call the engine makes, one JSON line each,
// appended to the file named by AWS_DOUBLE_JOURNAL, so tests can see what
// the engine asked for (which resources, in which order, in which region,
// with which inputs). Secret values are written in the clear, wrapped as
// {"secret": value}, so a test can compare them with what the CLI reveals.

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Entry is one journal line.
type Entry struct {
	Time    string         `json:"time"`
	Call    string         `json:"call"`
	Type    string         `json:"type,omitempty"`
	Name    string         `json:"name,omitempty"`
	URN     string         `json:"urn,omitempty"`
	ID      string         `json:"id,omitempty"`
	Region  string         `json:"region,omitempty"`
	Preview bool           `json:"preview,omitempty"`
	Inputs  map[string]any `json:"inputs,omitempty"`
	Outputs map[string]any `json:"outputs,omitempty"`
	Diffs   []string       `json:"diffs,omitempty"`
	// Diff only: the changed properties that replace the resource, and
	// whether the old one goes first.
	Replaces            []string `json:"replaces,omitempty"`
	DeleteBeforeReplace bool     `json:"deleteBeforeReplace,omitempty"`
	Error               string   `json:"error,omitempty"`
}

// Journal appends entries to a file; with no file it records nothing.
type Journal struct {
	mu   sync.Mutex
	path string
}

// Record appends one entry. A journal that cannot be written is reported on
// stderr (the engine shows it) but does not fail the call.
func (j *Journal) Record(e Entry) {
	if j.path == "" {
		return
	}
	e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(e)
	if err != nil {
		fmt.Fprintf(os.Stderr, "aws double: journal entry not encodable: %v\n", err)
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := os.OpenFile(j.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "aws double: journal %s: %v\n", j.path, err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		fmt.Fprintf(os.Stderr, "aws double: journal %s: %v\n", j.path, err)
	}
}

// Plain renders properties as JSON values: secrets as {"secret": v},
// unknowns as "<unknown>", archives and assets as {"archive"|"asset": hash}.
func Plain(m resource.PropertyMap) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[string(k)] = plainValue(v)
	}
	return out
}

func plainValue(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return map[string]any{"secret": plainValue(v.SecretValue().Element)}
	case v.IsComputed():
		return "<unknown>"
	case v.IsOutput():
		o := v.OutputValue()
		if !o.Known {
			return "<unknown>"
		}
		if o.Secret {
			return map[string]any{"secret": plainValue(o.Element)}
		}
		return plainValue(o.Element)
	case v.IsArchive():
		return map[string]any{"archive": v.ArchiveValue().Hash}
	case v.IsAsset():
		return map[string]any{"asset": v.AssetValue().Hash}
	case v.IsResourceReference():
		return map[string]any{"resource": string(v.ResourceReferenceValue().URN)}
	case v.IsArray():
		items := []any{}
		for _, item := range v.ArrayValue() {
			items = append(items, plainValue(item))
		}
		return items
	case v.IsObject():
		return Plain(v.ObjectValue())
	case v.IsString():
		return v.StringValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsBool():
		return v.BoolValue()
	}
	return nil
}
