package httpapi

import (
	"cmp"
	"encoding/base64"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/regbridge/regbridge/bridge/vocab"
)

// subscriptionPage is the answer of GET /v1/subscriptions.
type subscriptionPage struct {
	// Count is the number of live subscriptions, on every page.
	Count         int            `json:"count"`
	Subscriptions []Subscription `json:"subscriptions"`
	// Next is the after= value of the next page; absent on the last one
	// and on an unpaged listing.
	Next string `json:"next,omitempty"`
}

// listSubscriptions lists the live subscriptions ordered by AOR, then
// Call-ID, package and subscriber. Without limit= and after= it answers
// all of them, as it always did; with either, one page of at most limit
// (default 100), continued by after= the previous page's next.
func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	paged := q.Has("limit") || q.Has("after")
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeErr(w, err)
		return
	}
	var after string
	if c := q.Get("after"); c != "" {
		k, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			writeError(w, http.StatusBadRequest, "after must be the next value of a previous page")
			return
		}
		after = string(k)
	}
	var subs []Subscription
	if a.deps.Subscriptions != nil {
		subs = a.deps.Subscriptions()
	}
	// Each key built once, not at every comparison.
	keyed := make([]keyedSubscription, len(subs))
	for i := range subs {
		keyed[i] = keyedSubscription{subscriptionKey(&subs[i]), &subs[i]}
	}
	slices.SortFunc(keyed, func(x, y keyedSubscription) int { return cmp.Compare(x.key, y.key) })
	if paged {
		// Every key is longer than the empty first-page cursor.
		from := sort.Search(len(keyed), func(i int) bool { return keyed[i].key > after })
		keyed = keyed[from:]
	}
	page := subscriptionPage{Count: len(subs)}
	if paged && len(keyed) > limit {
		keyed = keyed[:limit]
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(keyed[limit-1].key))
	}
	page.Subscriptions = make([]Subscription, len(keyed))
	now := time.Now()
	for i, k := range keyed {
		page.Subscriptions[i] = *k.sub
		page.Subscriptions[i].Expires = vocab.SecondsLeft(k.sub.ExpiresAt, now)
	}
	writeJSON(w, http.StatusOK, page)
}

type keyedSubscription struct {
	key string
	sub *Subscription
}

// subscriptionKey orders subscriptions and is the paging cursor. Its
// fields are joined by NUL, which none of them contains, so comparing
// keys compares field by field.
func subscriptionKey(s *Subscription) string {
	return strings.Join([]string{s.AOR, s.CallID, s.Event, s.Subscriber}, "\x00")
}
