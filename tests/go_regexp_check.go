// Runs requests from tests/test_collector_go_regexp.py through Go's own
// strconv.Unquote and regexp packages: the string-literal and regular-expression
// semantics the OpenTelemetry Collector applies to collector-config/*.yaml.
// Standard library only. Reads a JSON list of requests on stdin, writes a JSON
// list of results. Strings travel base64-encoded so invalid UTF-8 survives.
package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"unicode/utf8"
)

type request struct {
	Op       string   `json:"op"`       // unquote | compile | match | replace | mask
	Patterns []string `json:"patterns"` // compile/match/replace: first only; mask: all, in order
	Input    string   `json:"input"`    // base64
	Repl     string   `json:"repl"`     // replace: Go template ($1)
}

type result struct {
	Output string `json:"output"` // base64
	Match  bool   `json:"match"`
	Valid  bool   `json:"valid"` // output is valid UTF-8
	Error  string `json:"error"`
}

func main() {
	var reqs []request
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		panic(err)
	}
	out := make([]result, len(reqs))
	for i, r := range reqs {
		out[i] = run(r)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}

func done(s string) result {
	return result{Output: base64.StdEncoding.EncodeToString([]byte(s)), Valid: utf8.ValidString(s)}
}

func run(r request) result {
	raw, err := base64.StdEncoding.DecodeString(r.Input)
	if err != nil {
		return result{Error: err.Error()}
	}
	input := string(raw)
	if r.Op == "unquote" {
		s, err := strconv.Unquote(input)
		if err != nil {
			return result{Error: err.Error()}
		}
		return done(s)
	}
	var res []*regexp.Regexp
	for _, p := range r.Patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return result{Error: err.Error()}
		}
		res = append(res, re)
	}
	switch r.Op {
	case "compile":
		return result{}
	case "match":
		return result{Match: res[0].MatchString(input)}
	case "replace": // what replace_all_patterns does to one string value
		return done(res[0].ReplaceAllString(input, r.Repl))
	case "mask": // what the redaction processor does to one string value
		for _, re := range res {
			if re.MatchString(input) {
				input = re.ReplaceAllStringFunc(input, func(string) string { return "****" })
			}
		}
		return done(input)
	}
	return result{Error: "unknown op " + r.Op}
}
