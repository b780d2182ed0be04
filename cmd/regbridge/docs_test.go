package main

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The documentation lives in README.md and docs/: these tests keep its
// links working and keep the code citing only documents that ship with
// the repository.

// repoRoot is the module root, two levels above this package.
const repoRoot = "../.."

// mdLink matches a Markdown inline link target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// docFiles are README.md and every page under docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) == 0 {
		t.Fatal("no docs/*.md found: is the test running from cmd/regbridge?")
	}
	return append([]string{filepath.Join(repoRoot, "README.md")}, pages...)
}

// proseLines returns the lines of a Markdown file outside fenced code
// blocks, with their line numbers.
func proseLines(t *testing.T, path string) (lines []string, nums []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	fenced := false
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			lines, nums = append(lines, l), append(nums, n)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines, nums
}

// anchors returns the GitHub-style anchors of a Markdown file's headings:
// lower case, punctuation other than '-' and '_' dropped, spaces as '-',
// repeats numbered -1, -2...
func anchors(t *testing.T, path string) map[string]bool {
	lines, _ := proseLines(t, path)
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range lines {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestDocLinks checks that every relative link in README.md and docs/
// names a file that exists and, for a Markdown file, a heading it has.
func TestDocLinks(t *testing.T) {
	cache := map[string]map[string]bool{}
	for _, file := range docFiles(t) {
		lines, nums := proseLines(t, file)
		for i, l := range lines {
			for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, frag, _ := strings.Cut(target, "#")
				resolved := file
				if path != "" {
					resolved = filepath.Join(filepath.Dir(file), path)
					if _, err := os.Stat(resolved); err != nil {
						t.Errorf("%s:%d: link %q: %s does not exist", rel(file), nums[i], target, rel(resolved))
						continue
					}
				}
				if frag == "" || !strings.HasSuffix(resolved, ".md") {
					continue
				}
				if cache[resolved] == nil {
					cache[resolved] = anchors(t, resolved)
				}
				if !cache[resolved][frag] {
					t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", rel(file), nums[i], target, rel(resolved), frag)
				}
			}
		}
	}
}

func rel(p string) string {
	r, err := filepath.Rel(repoRoot, p)
	if err != nil {
		return p
	}
	return r
}

// outsideCitation matches references to documents users of the repository
// never see (the project's private notes) and to issue numbers.
var outsideCitation = regexp.MustCompile(`DESIGN\.md|STORES(\.md)?\s+(section\s+)?\d|STORES\.md|STYLE\.md|RFC-NOTES|GO-DEPS|/work/|\bshared/spec|(?i:\bissues?\s+#?\d+)`)

// citedDoc matches a repository path ending in .md mentioned in code.
var citedDoc = regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md(#[a-z0-9_-]+)?\b`)

// TestCodeCitesRepoDocs checks that Go files, CI and build files, testdata
// and the documentation cite no document outside the repository and no
// issue number, and that every docs/*.md (and anchor) a Go file names
// exists.
func TestCodeCitesRepoDocs(t *testing.T) {
	docAnchors := map[string]map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if name == ".git" || name == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		r := rel(path)
		isGo := strings.HasSuffix(name, ".go")
		switch {
		case isGo, strings.HasSuffix(name, ".md"), r == ".ci/run", name == "Dockerfile",
			strings.HasPrefix(r, "testdata/") && d.Type().IsRegular(), strings.HasPrefix(name, "docker-compose"):
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for n, l := range strings.Split(string(b), "\n") {
			if r == "cmd/regbridge/docs_test.go" {
				break // this file spells the patterns out
			}
			if m := outsideCitation.FindString(l); m != "" {
				t.Errorf("%s:%d cites %q, which users of the repository cannot read: cite docs/ instead", r, n+1, m)
			}
			if !isGo {
				continue
			}
			for _, m := range citedDoc.FindAllString(l, -1) {
				p, frag, _ := strings.Cut(m, "#")
				if !strings.HasPrefix(p, "docs/") {
					continue
				}
				full := filepath.Join(repoRoot, p)
				if _, err := os.Stat(full); err != nil {
					t.Errorf("%s:%d cites %s, which does not exist", r, n+1, p)
					continue
				}
				if frag == "" {
					continue
				}
				if docAnchors[full] == nil {
					docAnchors[full] = anchors(t, full)
				}
				if !docAnchors[full][frag] {
					t.Errorf("%s:%d cites %s: no heading with anchor #%s there", r, n+1, m, frag)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAnchors pins the heading-to-anchor rule the link checks rely on.
func TestAnchors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "headings.markdown")
	text := "# Contact stores\n## Change capture (`cdc=trigger`)\n```\n# not a heading\n```\n### Kamailio's db_redis layout\n## Redis\n## Redis\n"
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	got := anchors(t, p)
	for _, want := range []string{"contact-stores", "change-capture-cdctrigger", "kamailios-db_redis-layout", "redis", "redis-1"} {
		if !got[want] {
			t.Errorf("anchor %q missing from %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Errorf("a line in a code block became an anchor")
	}
}
