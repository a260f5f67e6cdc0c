package secretgen

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCasesCarryTheMarker: every case of every family puts every token of
// its marker into its input, so that a leak test on it can fail; tokens
// are distinct and FromBytes is deterministic.
func TestCasesCarryTheMarker(t *testing.T) {
	if len(Families) < 12 {
		t.Fatalf("%d families; the leak tests promise at least 12", len(Families))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range Families {
		t.Run(f.Name, func(t *testing.T) {
			for i := 0; i < 500; i++ {
				c := Generate(rng, f, Config{})
				input := c.File
				for _, v := range c.Env {
					input += "\n" + v
				}
				seen := map[string]bool{}
				for _, tok := range c.Tokens {
					if seen[tok] {
						t.Fatalf("token %q repeats in %s", tok, c)
					}
					seen[tok] = true
					if !strings.Contains(input, tok) {
						t.Fatalf("token %q is not in the input of %s", tok, c)
					}
				}
				if got := c.Leaks(input); len(got) != len(c.Tokens) {
					t.Fatalf("Leaks found %d of %d tokens in the input", len(got), len(c.Tokens))
				}
			}
		})
	}
	a, b := FromBytes([]byte("seed"), Config{}), FromBytes([]byte("seed"), Config{})
	if a.String() != b.String() {
		t.Fatalf("FromBytes is not deterministic:\n%s\n%s", a, b)
	}
}
