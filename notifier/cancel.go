package notifier

import (
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// CANCEL of a SUBSCRIBE (RFC 6665 4.6, RFC 3261 9.2): a SUBSCRIBE cannot
// be cancelled. A CANCEL matching a known SUBSCRIBE transaction gets 200
// (with the To tag of that SUBSCRIBE's response) and changes nothing; any
// other CANCEL gets 481. sipgo matches CANCEL only to INVITE transactions
// and ends a non-INVITE server transaction as soon as the handler returns
// on TCP, so the notifier remembers recent SUBSCRIBE transactions itself:
// a fixed ring, each entry for Timer J (64*T1, the time a UDP non-INVITE
// server transaction lives), so memory stays bounded whatever the rate.

// recentTxCap bounds the SUBSCRIBE transactions remembered for CANCEL
// matching. A CANCEL for an older one gets 481, which costs the sender
// nothing: the SUBSCRIBE was answered long before.
const recentTxCap = 4096

type recentTx struct {
	key string // top Via branch and sent-by
	tag string // To tag of our final response; "" until sent
	at  time.Time
}

// recentTxs remembers the last recentTxCap SUBSCRIBE transactions. Its
// mutex guards ring, next and byKey.
type recentTxs struct {
	mu    sync.Mutex
	ring  [recentTxCap]recentTx
	next  int
	byKey map[string]int // index into ring
}

// txKey identifies a server transaction as RFC 3261 17.2.3 does for
// matching, without the method: the top Via's branch and sent-by.
func txKey(req *sip.Request) (string, bool) {
	via := req.Via()
	if via == nil {
		return "", false
	}
	branch, _ := via.Params.Get("branch")
	if branch == "" {
		return "", false
	}
	return branch + "\x00" + via.Host + "\x00" + strconv.Itoa(via.Port), true
}

// remember records a SUBSCRIBE transaction as it starts.
func (r *recentTxs) remember(key string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey = make(map[string]int, recentTxCap)
	}
	if _, ok := r.byKey[key]; ok {
		return // a retransmission
	}
	old := &r.ring[r.next]
	if old.key != "" && r.byKey[old.key] == r.next {
		delete(r.byKey, old.key)
	}
	*old = recentTx{key: key, at: now}
	r.byKey[key] = r.next
	r.next = (r.next + 1) % recentTxCap
}

// answered records the To tag of the final response.
func (r *recentTxs) answered(key, tag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.byKey[key]; ok {
		r.ring[i].tag = tag
	}
}

// match reports whether key names a SUBSCRIBE transaction younger than
// Timer J, and the To tag it was answered with.
func (r *recentTxs) match(key string, now time.Time) (tag string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.byKey[key]
	if !ok || now.Sub(r.ring[i].at) > sip.Timer_J {
		return "", false
	}
	return r.ring[i].tag, true
}

// trackedTx records the To tag of the final response to a SUBSCRIBE for
// a later CANCEL.
type trackedTx struct {
	sip.ServerTransaction
	recent *recentTxs
	key    string
}

func (t trackedTx) Respond(res *sip.Response) error {
	if !res.IsProvisional() {
		if to := res.To(); to != nil {
			tag, _ := to.Params.Get("tag")
			t.recent.answered(t.key, tag)
		}
	}
	return t.ServerTransaction.Respond(res)
}

// track remembers the SUBSCRIBE transaction of req and returns tx wrapped
// so that its final response's To tag is remembered too.
func (n *Notifier) track(req *sip.Request, tx sip.ServerTransaction) sip.ServerTransaction {
	key, ok := txKey(req)
	if !ok {
		return tx
	}
	n.recent.remember(key, time.Now())
	return trackedTx{ServerTransaction: tx, recent: &n.recent, key: key}
}

// onCancel answers CANCEL (RFC 6665 4.6): 200 for a known SUBSCRIBE
// transaction, whose outcome it does not change, else 481.
func (n *Notifier) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	key, ok := txKey(req)
	tag := ""
	if ok {
		tag, ok = n.recent.match(key, time.Now())
	}
	if !ok {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if to := res.To(); to != nil && tag != "" {
		// RFC 3261 9.2: the same To tag as the response to the SUBSCRIBE.
		to.Params.Add("tag", tag)
	}
	_ = tx.Respond(res)
}
