package pool

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
)

// maxReasonRunes caps the status reason an admin may give; Quarantine cuts
// a longer one.
const maxReasonRunes = 200

// AddRequest describes a new session.
type AddRequest struct {
	Provider   string
	Credential secret.Value // cookie text for grok, API key for xai
	// DedupKey identifies the login behind Credential, such as the sso
	// cookie alone; empty means the whole credential. Two sessions with
	// the same provider and DedupKey are duplicates.
	DedupKey string
	Label    string
	// ProxyURL is the outbound proxy for the session; empty means the
	// default egress.
	ProxyURL       secret.Value
	MaxConcurrency int // in-flight requests allowed; 0 means no cap
	Weight         int // relative share in selection; 0 means 1
}

// Add stores a new healthy session and puts it in rotation. The credential
// and proxy URL are encrypted, bound to the new row. A duplicate returns an
// error wrapping store.ErrConflict.
func (p *Pool) Add(ctx context.Context, req AddRequest) (View, error) {
	switch {
	case req.Provider == "":
		return View{}, errors.New("add session: provider is missing")
	case req.Credential.Empty():
		return View{}, errors.New("add session: credential is missing")
	case req.MaxConcurrency < 0:
		return View{}, fmt.Errorf("add session: max concurrency %d is negative", req.MaxConcurrency)
	case req.Weight < 0:
		return View{}, fmt.Errorf("add session: weight %d is negative", req.Weight)
	}
	if _, known := p.clients[req.Provider]; len(p.clients) > 0 && !known {
		return View{}, fmt.Errorf("add session: provider %q has no upstream client", req.Provider)
	}
	dedup := req.DedupKey
	if dedup == "" {
		dedup = req.Credential.Reveal()
	}
	hash := sha256.Sum256([]byte(req.Provider + ":" + dedup))

	now := p.now().UTC()
	s := store.Session{
		ID:             newSessionID(),
		Provider:       req.Provider,
		CredentialHash: hex.EncodeToString(hash[:]),
		Label:          req.Label,
		Status:         store.StatusHealthy,
		Weight:         req.Weight,
		MaxConcurrency: req.MaxConcurrency,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	var err error
	if s.Credential, err = p.kr.Encrypt([]byte(req.Credential.Reveal()), CredentialBinding(s.ID)); err != nil {
		return View{}, fmt.Errorf("add session: encrypt credential: %w", err)
	}
	if !req.ProxyURL.Empty() {
		if s.ProxyURL, err = p.kr.Encrypt([]byte(req.ProxyURL.Reveal()), ProxyBinding(s.ID)); err != nil {
			return View{}, fmt.Errorf("add session: encrypt proxy URL: %w", err)
		}
	}
	if err := p.st.CreateSession(ctx, &s); err != nil {
		return View{}, fmt.Errorf("add session: %w", err)
	}

	e := &entry{
		s:             s,
		cred:          req.Credential,
		proxy:         req.ProxyURL,
		egress:        egressName(req.ProxyURL),
		outcomes:      newWindow(p.cfg.FailureWindow),
		tokens:        p.burst(),
		tokensAt:      now,
		rotationStart: now,
	}
	p.mu.Lock()
	// A reload that read the store after CreateSession may have added
	// the session already.
	if loaded := p.lookup(s.ID); loaded != nil {
		e = loaded
	} else {
		p.addEntryLocked(e)
	}
	p.mu.Unlock()
	p.refreshGauges(now)
	p.log.Info("session added", "session_id", s.ID, "upstream", s.Provider)
	return p.view(e, now), nil
}

// newSessionID returns "ses_" and 24 random hex digits.
func newSessionID() string {
	var b [12]byte
	rand.Read(b[:])
	return "ses_" + hex.EncodeToString(b[:])
}

// Remove deletes session id from the store and the pool. Leases already
// handed out stay valid; their Release is ignored. Unknown ids return an
// error wrapping store.ErrNotFound.
func (p *Pool) Remove(ctx context.Context, id string) error {
	err := p.st.DeleteSession(ctx, id)
	p.mu.Lock()
	e := p.lookup(id)
	// A session deleted from the store by another process still leaves
	// this pool.
	if err != nil && !(errors.Is(err, store.ErrNotFound) && e != nil) {
		p.mu.Unlock()
		return fmt.Errorf("remove session %q: %w", id, err)
	}
	if e != nil {
		p.removeEntriesLocked(map[*entry]bool{e: true})
	}
	p.mu.Unlock()
	if e != nil {
		p.refreshGauges(p.now())
	}
	p.log.Info("session removed", "session_id", id)
	return nil
}

// Quarantine takes session id out of rotation until a probe passes or an
// admin activates it. reason is shown to operators, cut to 200 characters;
// empty means "admin_quarantine".
func (p *Pool) Quarantine(ctx context.Context, id, reason string) (View, error) {
	reason = strings.TrimSpace(reason)
	if runes := []rune(reason); len(runes) > maxReasonRunes {
		reason = string(runes[:maxReasonRunes])
	}
	return p.changeByAdmin(ctx, id, func(e *entry) {
		p.setStatusLocked(e, store.StatusQuarantined, ReasonAdminQuarantine, reason, p.now())
	})
}

// Activate returns session id to rotation: healthy, not resting, with a
// fresh failure rate and rotation window, whatever its status was.
func (p *Pool) Activate(ctx context.Context, id string) (View, error) {
	return p.changeByAdmin(ctx, id, func(e *entry) {
		now := p.now()
		e.rotationStart, e.rotationCount = now, 0
		p.setStatusLocked(e, store.StatusHealthy, ReasonAdminActivate, "", now)
	})
}

// changeByAdmin applies change to session id and saves it before
// returning, so that a store failure reaches the admin.
func (p *Pool) changeByAdmin(ctx context.Context, id string, change func(e *entry)) (View, error) {
	e := p.lookup(id)
	if e == nil {
		return View{}, fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	e.mu.Lock()
	if e.removed {
		e.mu.Unlock()
		return View{}, fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	change(e)
	e.mu.Unlock()
	p.settleGauges(p.now())

	if err := p.saveNow(ctx, id); err != nil {
		return View{}, err
	}
	v, _ := p.Get(id)
	return v, nil
}

// Probe checks session id's login now and applies the result as the health
// check does. The View shows the session afterwards. The error is non-nil
// when the probe failed; it wraps the *upstream.Error.
func (p *Pool) Probe(ctx context.Context, id string) (View, error) {
	probeErr := p.probeSession(ctx, id)
	if errors.Is(probeErr, store.ErrNotFound) {
		return View{}, probeErr
	}
	if err := p.saveNow(ctx, id); err != nil {
		return View{}, err
	}
	v, ok := p.Get(id)
	if !ok {
		return View{}, fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	return v, probeErr
}

// Get returns the view of session id.
func (p *Pool) Get(id string) (View, bool) {
	e := p.lookup(id)
	if e == nil {
		return View{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed {
		return View{}, false
	}
	return p.viewLocked(e, p.now()), true
}

// view returns the view of e.
func (p *Pool) view(e *entry, now time.Time) View {
	e.mu.Lock()
	defer e.mu.Unlock()
	return p.viewLocked(e, now)
}

// List returns the sessions that match f, sorted by id, and the cursor for
// the next page: the last id returned, or "" when no more match. The
// status "resting" matches healthy sessions that are cooling down.
func (p *Pool) List(f store.SessionFilter) ([]View, string) {
	now := p.now()
	var matched []*entry
	p.roster.Load().all(func(e *entry) {
		if f.Provider != "" && e.s.Provider != f.Provider {
			return
		}
		if f.After != "" && e.s.ID <= f.After {
			return
		}
		e.mu.Lock()
		resting, status := e.resting(now), e.s.Status
		e.mu.Unlock()
		if f.Status == statusResting && !resting {
			return
		}
		if f.Status != "" && f.Status != statusResting && status != f.Status {
			return
		}
		matched = append(matched, e)
	})
	slices.SortFunc(matched, func(a, b *entry) int { return cmp.Compare(a.s.ID, b.s.ID) })

	next := ""
	if f.Limit > 0 && len(matched) > f.Limit {
		matched = matched[:f.Limit]
		next = matched[len(matched)-1].s.ID
	}
	views := make([]View, 0, len(matched))
	for _, e := range matched {
		views = append(views, p.view(e, now))
	}
	return views, next
}

// Counts returns the number of sessions by status, with every status
// present, plus "resting" for healthy sessions that are cooling down.
func (p *Pool) Counts() map[string]int {
	now := p.now()
	counts := make(map[string]int, len(gaugeStatuses))
	for _, status := range gaugeStatuses {
		counts[status] = 0
	}
	p.roster.Load().all(func(e *entry) {
		e.mu.Lock()
		defer e.mu.Unlock()
		counts[e.s.Status]++
		if e.resting(now) {
			counts[statusResting]++
		}
	})
	return counts
}

// Usable returns the number of provider's sessions in rotation now:
// healthy, not resting, readable and behind a route whose circuit is not
// open. Momentary limits (tokens, concurrency, quota) are not considered.
func (p *Pool) Usable(provider string) int {
	now := p.now()
	n := 0
	for _, e := range p.roster.Load().byProvider[provider] {
		e.mu.Lock()
		if p.inRotationLocked(e, now) {
			n++
		}
		e.mu.Unlock()
	}
	return n
}
