package signing

import (
	"strings"
	"sync/atomic"

	"github.com/apiguard/apiguard/internal/sfv"
)

// listCache remembers the covered components of recently verified
// signatures, parsed. A client signs every request with the same
// components, so a Signature-Input line differs from the last one only
// after its inner list, in created, nonce and the other parameters: a
// line that starts with a remembered list has only its parameters
// parsed. It is safe for concurrent use: entries are immutable, swapped
// whole.
//
// A list is remembered only from a line whose signature verified, so
// unauthenticated traffic cannot churn the entries, and it is used only
// for a line that starts with exactly its text: the parse of that text is
// the same whatever follows it.
type listCache struct {
	entries [listCacheSize]atomic.Pointer[cachedList]
	next    atomic.Uint32 // the entry replaced next
}

// listCacheSize is the number of lists remembered: a few profiles (with a
// body and without, say) signed by the same client code.
const listCacheSize = 8

// cachedList is one remembered inner list.
type cachedList struct {
	prefix    string         // the line up to its first ')': label=(...)
	label     string         // the dictionary key
	listStart int            // where '(' is in prefix
	list      *componentList // parsed from prefix and compiled; never modified
	canonical bool           // the list's text is its canonical serialization
}

// lookup returns the remembered list that line starts with, or nil.
func (c *listCache) lookup(line string) *cachedList {
	return c.find(listPrefix(line))
}

// listPrefix returns line up to its first ')', "" when it has none: the
// text a remembered list is matched on.
func listPrefix(line string) string {
	k := strings.IndexByte(line, ')')
	if k < 0 {
		return ""
	}
	return line[:k+1]
}

// find returns the remembered list of text prefix, or nil.
func (c *listCache) find(prefix string) *cachedList {
	if prefix == "" {
		return nil
	}
	for i := range c.entries {
		if e := c.entries[i].Load(); e != nil && e.prefix == prefix {
			return e
		}
	}
	return nil
}

// remember records the inner list of line, a Signature-Input field of one
// member, label, whose signature verified. It does nothing when line's
// list is remembered already or does not end at its first ')' (a ')'
// inside a String).
func (c *listCache) remember(line, label string) {
	prefix := listPrefix(line)
	if prefix == "" || c.find(prefix) != nil {
		return
	}
	// A copy of the text, for the parsed strings to point into: the entry
	// does not keep the request's header alive.
	prefix = strings.Clone(prefix)
	d, err := sfv.ParseDictionary([]string{prefix})
	if err != nil || d.Repeated || len(d.Members) != 1 {
		return
	}
	m := d.Members[0]
	if m.Key != label || !m.IsInnerList || len(m.Params) != 0 {
		return
	}
	list := new(componentList)
	if list.compile(m.Items) != nil {
		return
	}
	e := &cachedList{
		prefix:    prefix,
		label:     m.Key,
		listStart: strings.IndexByte(prefix, '('),
		list:      list,
		canonical: m.Raw != "",
	}
	c.entries[c.next.Add(1)%listCacheSize].Store(e)
}

// parseCached parses line, a Signature-Input field of one member that
// starts with e's list, as sfv.Scratch.ParseDictionary would: e's items,
// and the parameters that follow them, parsed into sc. It reports false
// when the rest of line is not parameters to its end (another member,
// trailing space, a syntax error), which the parser then reads instead.
func parseCached(sc *sfv.Scratch, line string, e *cachedList) (sfv.Member, bool) {
	rest := line[len(e.prefix):]
	ps, n, canonical, err := sc.ParseParams(rest)
	if err != nil || n != len(rest) {
		return sfv.Member{}, false
	}
	m := sfv.Member{IsInnerList: true, Items: e.list.items, Params: ps}
	if e.canonical && canonical {
		m.Raw = line[e.listStart:]
	}
	return m, true
}
