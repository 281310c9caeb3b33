package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// overview answers GET /.
func (c *console) overview(w http.ResponseWriter, r *http.Request) {
	pg := c.newPage(w, r, "overview", "Overview")
	st, err := c.p.Stats(r.Context())
	var o Overview
	if err != nil {
		// The health and the breaker need no store: show them anyway.
		h := c.p.Health()
		o = Overview{
			Title: c.title, Health: healthView(h), StatsError: err.Error(),
			Links: map[mlmsoft.LinkState]int{}, Volumes: map[mlmsoft.VolumeState]int{},
			Totals: TotalsView{Failures: map[string]int64{}, Linked: map[mlmsoft.LinkedVia]int64{}},
		}
		// The root API reads the breaker only with the store's counts.
		o.Breaker = BreakerView{Meaning: "Unknown while the store cannot be read."}
		c.log.Error("console: reading the plugin's stats failed", "err", err)
	} else {
		o = overviewOf(c.title, st)
	}
	c.render(w, r, pg, o)
}

// limit reads the limit parameter: the page size when absent.
func (c *console) limit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return c.pageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > PageSizeMax {
		return 0, fmt.Errorf("%w: limit must be a number from 1 to %d", mlmsoft.ErrInvalidInput, PageSizeMax)
	}
	return n, nil
}

// linksPage is the data of the links page.
type linksPage struct {
	LinkList
	Counts    map[mlmsoft.LinkState]int // nil when Stats failed
	Filter    string                    // the tab: "", "unlinked" or a state
	NextHref  string                    // the next page, relative to the root
	FirstHref string                    // the first page, when this is not it
}

// The "not linked" filter of the links page.
var unlinkedStates = []mlmsoft.LinkState{mlmsoft.LinkPending, mlmsoft.LinkCreated, mlmsoft.LinkFailed}

// links answers GET /links.
func (c *console) links(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := c.limit(q)
	if err != nil {
		c.fail(w, r, problemOf(err, ""), "links")
		return
	}
	var states []mlmsoft.LinkState
	for _, s := range q["state"] {
		if s = strings.TrimSpace(s); s != "" {
			states = append(states, mlmsoft.LinkState(s))
		}
	}
	email := strings.TrimSpace(q.Get("email"))
	page, err := c.p.ListLinks(r.Context(), mlmsoft.LinkQuery{States: states, EmailPrefix: email, After: q.Get("after"), Limit: limit})
	if err != nil {
		c.fail(w, r, problemOf(err, ""), "links")
		return
	}
	list := LinkList{Links: make([]Link, 0, len(page.Links)), Next: page.Next, States: states, Email: email}
	for _, l := range page.Links {
		list.Links = append(list.Links, linkOf(l))
	}
	pg := c.newPage(w, r, "links", "Links")
	if wantsJSON(r) {
		c.render(w, r, pg, list)
		return
	}
	data := linksPage{LinkList: list, Filter: linkFilterName(states)}
	if st, err := c.p.Stats(r.Context()); err == nil {
		data.Counts = st.Links
	}
	nq := url.Values{}
	for _, s := range states {
		nq.Add("state", string(s))
	}
	if email != "" {
		nq.Set("email", email)
	}
	if q.Get("limit") != "" {
		nq.Set("limit", strconv.Itoa(limit))
	}
	if q.Get("after") != "" {
		data.FirstHref = "links?" + nq.Encode()
	}
	if list.Next != "" {
		nq.Set("after", list.Next)
		data.NextHref = "links?" + nq.Encode()
	}
	pg.Data = data
	c.writeHTML(w, r, http.StatusOK, pg)
}

// linkFilterName names the tab a filter matches.
func linkFilterName(states []mlmsoft.LinkState) string {
	switch {
	case len(states) == 0:
		return ""
	case len(states) == 1:
		return string(states[0])
	case len(states) == len(unlinkedStates):
		for i, s := range unlinkedStates {
			if states[i] != s {
				return "custom"
			}
		}
		return "unlinked"
	}
	return "custom"
}

// volumesPage is the data of the volume changes page.
type volumesPage struct {
	ChangeList
	Counts    map[mlmsoft.VolumeState]int // nil when Stats failed
	Filter    string                      // the tab: "", "attention", "open" or a state
	NextHref  string                      // the next page, relative to the root
	FirstHref string                      // the first page, when this is not it
}

// The filters of the volume changes page.
var (
	attentionStates = []mlmsoft.VolumeState{mlmsoft.VolumeParked, mlmsoft.VolumeUncertain}
	openStates      = []mlmsoft.VolumeState{mlmsoft.VolumePending, mlmsoft.VolumeSending, mlmsoft.VolumeParked, mlmsoft.VolumeUncertain}
)

// listChanges reads a page of changes: up to limit after the after
// parameter, and the id of the next page.
func (c *console) listChanges(r *http.Request, f mlmsoft.VolumeFilter, limit int) ([]Change, int64, error) {
	if s := r.URL.Query().Get("after"); s != "" {
		after, err := strconv.ParseInt(s, 10, 64)
		if err != nil || after < 0 {
			return nil, 0, fmt.Errorf("%w: after must be a change id", mlmsoft.ErrInvalidInput)
		}
		f.AfterID = after
	}
	f.Limit = limit + 1
	cs, err := c.p.ListVolumes(r.Context(), f)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(cs) > limit {
		cs = cs[:limit]
		next = cs[limit-1].ID
	}
	out := make([]Change, 0, len(cs))
	for _, ch := range cs {
		out = append(out, changeOf(ch, c.timeout))
	}
	return out, next, nil
}

// volumes answers GET /volumes.
func (c *console) volumes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := c.limit(q)
	if err != nil {
		c.fail(w, r, problemOf(err, ""), "volumes")
		return
	}
	var states []mlmsoft.VolumeState
	for _, s := range q["state"] {
		if s = strings.TrimSpace(s); s != "" {
			states = append(states, mlmsoft.VolumeState(s))
		}
	}
	user := q.Get("user")
	changes, next, err := c.listChanges(r, mlmsoft.VolumeFilter{UserID: user, States: states}, limit)
	if err != nil {
		c.fail(w, r, problemOf(err, ""), "volumes")
		return
	}
	list := ChangeList{Changes: changes, Next: next, States: states, UserID: user}
	heading := "Volume changes"
	if user != "" {
		heading = "Volume changes of user " + user
	}
	pg := c.newPage(w, r, "volumes", heading)
	if wantsJSON(r) {
		c.render(w, r, pg, list)
		return
	}
	data := volumesPage{ChangeList: list, Filter: volumeFilterName(states)}
	if st, err := c.p.Stats(r.Context()); err == nil {
		data.Counts = st.Volumes
	}
	nq := url.Values{}
	for _, s := range states {
		nq.Add("state", string(s))
	}
	if user != "" {
		nq.Set("user", user)
	}
	if q.Get("limit") != "" {
		nq.Set("limit", strconv.Itoa(limit))
	}
	if q.Get("after") != "" {
		data.FirstHref = "volumes?" + nq.Encode()
	}
	if next != 0 {
		nq.Set("after", strconv.FormatInt(next, 10))
		data.NextHref = "volumes?" + nq.Encode()
	}
	pg.Data = data
	c.writeHTML(w, r, http.StatusOK, pg)
}

// volumeFilterName names the tab a filter matches.
func volumeFilterName(states []mlmsoft.VolumeState) string {
	eq := func(a, b []mlmsoft.VolumeState) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	switch {
	case len(states) == 0:
		return ""
	case len(states) == 1:
		return string(states[0])
	case eq(states, attentionStates):
		return "attention"
	case eq(states, openStates):
		return "open"
	}
	return "custom"
}

// getChange reads one change by id, or an error wrapping ErrNotFound.
func (c *console) getChange(r *http.Request, id int64) (mlmsoft.VolumeChange, error) {
	if id <= 0 {
		return mlmsoft.VolumeChange{}, fmt.Errorf("change %d: %w", id, mlmsoft.ErrNotFound)
	}
	return c.p.Volume(r.Context(), id)
}

// headOf returns the id of the user's head (oldest change not final), or 0.
func (c *console) headOf(r *http.Request, userID string) int64 {
	cs, err := c.p.ListVolumes(r.Context(), mlmsoft.VolumeFilter{UserID: userID, States: openStates, Limit: 1})
	if err != nil || len(cs) == 0 {
		return 0
	}
	return cs[0].ID
}

// volumePage is the data of one change's page.
type volumePage struct {
	Change
	Link *Link // the user's link, when it could be read
}

// volume answers GET /volumes/{id}.
func (c *console) volume(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		c.fail(w, r, problem{status: http.StatusNotFound, code: "not_found",
			message: fmt.Sprintf("There is no volume change %q.", r.PathValue("id"))}, "volumes")
		return
	}
	ch, err := c.getChange(r, id)
	if err != nil {
		msg := ""
		if errors.Is(err, mlmsoft.ErrNotFound) {
			msg = fmt.Sprintf("There is no volume change %d (changes delivered, rejected or skipped long ago are purged).", id)
		}
		c.fail(w, r, problemOf(err, msg), "volumes")
		return
	}
	v := changeOf(ch, c.timeout)
	v.Head = !ch.State.Final() && c.headOf(r, ch.UserID) == ch.ID
	pg := c.newPage(w, r, "volume", fmt.Sprintf("Volume change %d", id))
	if wantsJSON(r) {
		c.render(w, r, pg, v)
		return
	}
	data := volumePage{Change: v}
	if l, err := c.p.Link(r.Context(), ch.UserID); err == nil {
		lv := linkOf(l)
		data.Link = &lv
	}
	pg.Data = data
	c.writeHTML(w, r, http.StatusOK, pg)
}

// userPage is the data of a user's page.
type userPage struct {
	UserView
	NextHref  string // the queue's next page, relative to the root
	FirstHref string // its first page, when this is not it
}

// user answers GET /user?id=U.
func (c *console) user(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("id")
	if strings.TrimSpace(id) == "" {
		c.fail(w, r, problem{status: http.StatusBadRequest, code: "invalid_input",
			message: "Give a host user id (the id parameter)."}, "links")
		return
	}
	limit, err := c.limit(q)
	if err != nil {
		c.fail(w, r, problemOf(err, ""), "links")
		return
	}
	l, err := c.p.Link(r.Context(), id)
	if err != nil {
		msg := ""
		if errors.Is(err, mlmsoft.ErrNotFound) {
			msg = fmt.Sprintf("There is no user %q: the plugin was never told of their sign-up.", id)
		}
		c.fail(w, r, problemOf(err, msg), "links")
		return
	}
	queue, next, err := c.listChanges(r, mlmsoft.VolumeFilter{UserID: id}, limit)
	if err != nil {
		c.fail(w, r, problemOf(err, ""), "links")
		return
	}
	v := UserView{Link: linkOf(l), Queue: queue, Next: next, HeadID: c.headOf(r, id)}
	for i := range v.Queue {
		v.Queue[i].Head = v.Queue[i].ID == v.HeadID
	}
	pg := c.newPage(w, r, "user", "User "+id)
	if wantsJSON(r) {
		c.render(w, r, pg, v)
		return
	}
	data := userPage{UserView: v}
	nq := url.Values{"id": {id}}
	if q.Get("limit") != "" {
		nq.Set("limit", strconv.Itoa(limit))
	}
	if q.Get("after") != "" {
		data.FirstHref = "user?" + nq.Encode()
	}
	if next != 0 {
		nq.Set("after", strconv.FormatInt(next, 10))
		data.NextHref = "user?" + nq.Encode()
	}
	pg.Data = data
	c.writeHTML(w, r, http.StatusOK, pg)
}
