/* YAML to jansson, with libyaml: rendered kubefiles (multi-document streams)
 * and kubeconfig files.
 *
 * Scalars resolve as Kubernetes (sigs.k8s.io/yaml) mostly sees them, on the
 * YAML 1.2 core schema: quoted and block (| >) scalars are strings; plain
 * scalars null/Null/NULL/~/empty are null, true/True/TRUE/false/False/FALSE
 * booleans, [-+]?[0-9]+ and [-+]?0x.. / 0o.. / 0b.. integers, and, as go-yaml
 * reads file modes, a leading 0 followed only by octal digits ("0755") is octal;
 * [-+]?(.5|1|1.|1.5)(e[-+]?N)? are numbers (integers when they are whole and
 * fit, as Go's JSON would print them), everything else is a string. .inf and
 * .nan, and integers beyond json_int_t, are errors: JSON cannot hold them.
 * Tags !!str !!int !!float !!bool !!null !!binary !!map !!seq and "!" are
 * honoured; other tags are errors.
 *
 * Mapping keys must be scalars and become strings (their text); duplicate keys
 * are errors; "<<" merge keys are applied. Anchors and aliases are expanded
 * (copies, so the result is a tree), bounded: at most YAML_JSON_MAX_NODES
 * nodes per stream and YAML_JSON_MAX_DEPTH levels of nesting. */
#ifndef RUNBOAT_YAML_JSON_H
#define RUNBOAT_YAML_JSON_H

#include <jansson.h>
#include <stddef.h>

#define YAML_JSON_MAX_NODES 1000000
#define YAML_JSON_MAX_DEPTH 256

/* Parses a YAML stream of one or more documents into a new JSON array (caller
 * owns) with one element per document; empty documents (nothing but comments,
 * or a bare `---`) are skipped, so an empty stream gives an empty array.
 * NULL on error, with "line L, column C: problem" in err (may be NULL). */
json_t *yaml_json_parse_stream(const char *data, size_t len, char *err, size_t errlen);

/* Parses a stream that holds exactly one (non-empty) document; caller owns
 * the result. NULL on error, including an empty stream or several documents. */
json_t *yaml_json_parse_one(const char *data, size_t len, char *err, size_t errlen);

#endif
