package dbfallback

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretFile caps how much of a DATABASE_URL_FILE is read.
const maxSecretFile = 64 << 10

// sourceFromFile reads the secret file that variable+"_FILE" names,
// capped at maxSecretFile bytes. The file holds the value alone, or is in
// .env form with exactly one line named after variable ("DATABASE_URL=…",
// optionally after "export "): that line is used, with a note, and the
// other lines are ignored. A file of several lines is never echoed.
func sourceFromFile(variable, path string) Source {
	name := variable + "_FILE"
	s := Source{Name: name, Found: true, Detail: redactInput(path)}
	switch {
	case strings.TrimSpace(path) == "":
		s.Err = &ValidationError{Code: CodeEmpty, Reason: "the variable names no file",
			Hint: "set " + name + " to the path of a file holding the URL, or unset it"}
		return s
	case s.Detail != path:
		s.Err = &ValidationError{Code: CodeBadPath, Input: s.Detail,
			Reason: "the variable holds a connection string, not the path of a file",
			Hint:   "put the URL in " + variable + ", or in a file whose path goes in " + name}
		return s
	}
	data, err := readCapped(path, maxSecretFile)
	if err != nil {
		s.Err = fmt.Errorf("dbfallback: read %s %q: %w", name, path, err)
		return s
	}
	content := string(data)
	s.Target, s.Err = Validate(content)
	if s.Err == nil {
		return s
	}
	value, line, n := envFileLine(content, variable)
	switch {
	case n == 1:
		s.Target, s.Err = Validate(value)
		if s.Err == nil {
			s.Target.Notes = append([]string{fmt.Sprintf("read the %s line (line %d) of a .env-style file; other lines ignored",
				variable, line)}, s.Target.Notes...)
		}
	case n > 1:
		s.Target, s.Err = Target{}, &ValidationError{Code: CodePastedAssignment,
			Input:  redactInput(content),
			Reason: fmt.Sprintf("the file has %d lines named %s; dbfallback cannot tell which one is meant", n, variable),
			Hint:   "keep one " + variable + "=… line in the file, or put the URL alone in it"}
	case lineCount(content) > 1 && codeOf(s.Err) == CodeControlChar:
		s.Target, s.Err = Target{}, &ValidationError{Code: CodeControlChar,
			Input:  redactInput(content),
			Reason: fmt.Sprintf("the file holds %d lines and none is %s=…", lineCount(content), variable),
			Hint:   "put the URL alone in the file, or one line " + variable + "=postgres://…"}
	}
	return s
}

// envFileLine finds the lines of a .env-style text that assign variable
// ("NAME=value" or "export NAME=value", blanks around '=' allowed) and
// returns the value of the last one (its line number, 1-based) and how
// many there are.
func envFileLine(content, variable string) (value string, line, n int) {
	for i, l := range strings.Split(content, "\n") {
		l = strings.TrimPrefix(strings.TrimSpace(l), "export ")
		rest, ok := strings.CutPrefix(strings.TrimLeft(l, " \t"), variable)
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, " \t")
		if !strings.HasPrefix(rest, "=") {
			continue
		}
		value, line, n = rest[1:], i+1, n+1
	}
	return value, line, n
}

// codeOf returns the Code of a *ValidationError in err's chain, or "".
func codeOf(err error) Code {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Code
	}
	return ""
}

var errTooLarge = errors.New("file is larger than 64 KiB; it does not hold just a URL")

func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, errors.New("is a directory, not a file")
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge
	}
	return data, nil
}
