package mcp

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/jsonschema-go/jsonschema"
)

// Output schemas. Every tool declares the schema of its results, derived
// from its Go result type (defTool's Out) the way input schemas are from
// In, and simplified the same way.
//
// A tool's declared schema also admits its error results: a failed call
// answers with errorView (error, message, hint, workspaces) as its
// structured content, and a client that validates structuredContent
// against outputSchema (the TypeScript SDK does, for every result that
// carries it) would otherwise reject the very answer that says what went
// wrong. So errorView's properties are merged in, all optional, and
// "required" keeps only the fields every result has, errors included:
// in practice none. The precise per-shape schemas (resultVariants) stay
// what the tests check each result against.

// variants is implemented by a result type that takes one of several
// shapes (see either): it gives each shape's schema.
type variants interface {
	variantSchemas() ([]*jsonschema.Schema, error)
}

// schemaFor is the simplified schema inferred for T.
func schemaFor[T any]() (*jsonschema.Schema, error) {
	s, err := jsonschema.For[T](nil)
	if err != nil {
		return nil, err
	}
	simplify(s)
	return s, nil
}

// resultVariants are the schemas of Out's shapes: one for a plain struct,
// several for a variants type.
func resultVariants[Out any]() ([]*jsonschema.Schema, error) {
	var z Out
	if v, ok := any(z).(variants); ok {
		return v.variantSchemas()
	}
	s, err := schemaFor[Out]()
	if err != nil {
		return nil, err
	}
	return []*jsonschema.Schema{s}, nil
}

// errorSchema is the schema of errorView.
func errorSchema() *jsonschema.Schema {
	s, err := schemaFor[errorView]()
	if err != nil {
		panic(fmt.Sprintf("mcp: errorView schema: %v", err))
	}
	return s
}

// declaredSchema is the outputSchema a tool declares: its result shapes
// and errorView merged.
func declaredSchema(shapes []*jsonschema.Schema) *jsonschema.Schema {
	return mergeSchemas(append(slices.Clone(shapes), errorSchema())...)
}

// mergeSchemas returns an object schema that admits every object that
// one of ss admits: the union of their properties (a property two of them
// describe differently admits either description), required only where
// all require it, and no other properties where none of them allows any.
func mergeSchemas(ss ...*jsonschema.Schema) *jsonschema.Schema {
	m := &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{}}
	closed := true
	for i, s := range ss {
		s = s.CloneSchemas()
		for _, name := range propertyNames(s) {
			p := s.Properties[name]
			have, ok := m.Properties[name]
			switch {
			case !ok:
				m.Properties[name] = p
				m.PropertyOrder = append(m.PropertyOrder, name)
			case !sameSchema(have, p):
				if len(have.AnyOf) > 0 && have.Type == "" {
					if !slices.ContainsFunc(have.AnyOf, func(a *jsonschema.Schema) bool { return sameSchema(a, p) }) {
						have.AnyOf = append(have.AnyOf, p)
					}
				} else {
					m.Properties[name] = &jsonschema.Schema{AnyOf: []*jsonschema.Schema{have, p}}
				}
			}
		}
		if i == 0 {
			m.Required = slices.Clone(s.Required)
		} else {
			m.Required = slices.DeleteFunc(m.Required, func(r string) bool { return !slices.Contains(s.Required, r) })
		}
		if s.AdditionalProperties == nil || !isFalse(s.AdditionalProperties) {
			closed = false
		}
	}
	if len(m.Required) == 0 {
		m.Required = nil
	}
	if closed {
		m.AdditionalProperties = &jsonschema.Schema{Not: &jsonschema.Schema{}}
	}
	return m
}

// propertyNames lists s's properties in their declared order.
func propertyNames(s *jsonschema.Schema) []string {
	names := slices.Clone(s.PropertyOrder)
	for n := range s.Properties {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return slices.DeleteFunc(names, func(n string) bool { return s.Properties[n] == nil })
}

func sameSchema(a, b *jsonschema.Schema) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// isFalse reports whether s is the schema that admits nothing (how
// jsonschema.For closes a struct: additionalProperties false).
func isFalse(s *jsonschema.Schema) bool {
	return reflect.DeepEqual(s, &jsonschema.Schema{Not: &jsonschema.Schema{}})
}

// either is a result of one of two shapes: A, or B. workspace_exec answers
// a foreground command with an execView and a background start with a
// bgView; exec_status follows one command or lists them. Its JSON is that
// of the shape it holds; its schema merges both (variants).
type either[A, B any] struct {
	a *A
	b *B
}

func eitherA[A, B any](a A) either[A, B] { return either[A, B]{a: &a} }
func eitherB[A, B any](b B) either[A, B] { return either[A, B]{b: &b} }

// MarshalJSON encodes the shape e holds, without HTML escaping like every
// result (encodeJSON).
func (e either[A, B]) MarshalJSON() ([]byte, error) {
	if e.a != nil {
		return encodeJSON(e.a)
	}
	if e.b != nil {
		return encodeJSON(e.b)
	}
	return nil, fmt.Errorf("mcp: empty result")
}

func (either[A, B]) variantSchemas() ([]*jsonschema.Schema, error) {
	a, err := schemaFor[A]()
	if err != nil {
		return nil, err
	}
	b, err := schemaFor[B]()
	if err != nil {
		return nil, err
	}
	return []*jsonschema.Schema{a, b}, nil
}
