package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mlmsoft-go/mlmsoft"
)

// maxNote bounds an action's note, as the plugin does for volume actions.
const maxNote = 1000

// The volume actions.
type volumeAct int

const (
	actRetry volumeAct = iota
	actResolve
	actSkip
)

// actionInput is what an action request carries.
type actionInput struct {
	Note       string `json:"note"`
	Resolution string `json:"resolution"`
	CSRF       string `json:"-"`
	Back       string `json:"-"`
}

// readAction parses an action's form or JSON body (at most 64 KiB).
func readAction(w http.ResponseWriter, r *http.Request) (actionInput, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var in actionInput
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			return actionInput{}, fmt.Errorf("%w: the body is not a JSON object with note and resolution: %v", mlmsoft.ErrInvalidInput, err)
		}
		return in, nil
	}
	if err := r.ParseForm(); err != nil {
		return actionInput{}, fmt.Errorf("%w: the form cannot be read: %v", mlmsoft.ErrInvalidInput, err)
	}
	return actionInput{
		Note: r.PostForm.Get("note"), Resolution: r.PostForm.Get("resolution"),
		CSRF: r.PostForm.Get(csrfField), Back: r.PostForm.Get("back"),
	}, nil
}

// begin runs the checks every action shares: the request's body, CSRF and
// the operator's name. It answers the request itself and returns false
// when one fails.
func (c *console) begin(w http.ResponseWriter, r *http.Request, what, back string) (actionInput, string, bool) {
	in, err := readAction(w, r)
	if err != nil {
		c.refuse(w, r, what, "", problemOf(err, ""), back)
		return in, "", false
	}
	if reason, ok := c.checkCSRF(r, in.CSRF); !ok {
		c.refuse(w, r, what, "", problem{status: http.StatusForbidden, code: "forbidden", message: reason}, back)
		return in, "", false
	}
	by := strings.TrimSpace(c.operator(r))
	if by == "" {
		c.refuse(w, r, what, "", problem{status: http.StatusForbidden, code: "forbidden",
			message: "The console cannot tell who you are (the host's Options.Operator gave no name), so it cannot record the action: refused."}, back)
		return in, "", false
	}
	in.Note = strings.TrimSpace(in.Note)
	if len(in.Note) > maxNote || !utf8.ValidString(in.Note) {
		c.refuse(w, r, what, by, problem{status: http.StatusBadRequest, code: "invalid_input",
			message: fmt.Sprintf("The note must be text of at most %d bytes.", maxNote)}, back)
		return in, "", false
	}
	return in, by, true
}

// refuse logs a refused action and answers it.
func (c *console) refuse(w http.ResponseWriter, r *http.Request, what, by string, pr problem, back string) {
	c.log.Warn("console action refused", "action", what, "by", by, "status", pr.status, "reason", pr.message, "err", pr.detail)
	c.fail(w, r, pr, back)
}

// done answers an action that was taken: JSON, or a redirect back with a
// flash message.
func (c *console) done(w http.ResponseWriter, r *http.Request, res ActionResult, back string) {
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, res)
		return
	}
	setFlash(w, r, flash{Kind: "ok", Message: res.Message})
	// Relative to the action's own path (not made absolute as http.Redirect
	// would, from the path the console was handed).
	w.Header().Set("Location", base(r)+back)
	w.WriteHeader(http.StatusSeeOther)
}

// volumeAction returns the handler of POST /volumes/{id}/retry, resolve or
// skip.
func (c *console) volumeAction(act volumeAct) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, perr := strconv.ParseInt(r.PathValue("id"), 10, 64)
		defBack := "volumes/" + r.PathValue("id")
		what := [...]string{"retry", "resolve", "skip"}[act]
		in, by, ok := c.begin(w, r, what, defBack)
		if !ok {
			return
		}
		back := cleanBack(in.Back)
		if in.Back == "" {
			back = defBack
		}
		if perr != nil || id <= 0 {
			c.refuse(w, r, what, by, problem{status: http.StatusNotFound, code: "not_found",
				message: fmt.Sprintf("There is no volume change %q.", r.PathValue("id"))}, "volumes")
			return
		}
		var (
			ch  mlmsoft.VolumeChange
			err error
			msg string
		)
		switch act {
		case actRetry:
			what = ActionRetry
			ch, err = c.p.RetryVolume(r.Context(), id, by, in.Note)
			msg = fmt.Sprintf("Change %d will be sent again.", id)
		case actResolve:
			if in.Note == "" {
				c.refuse(w, r, what, by, problem{status: http.StatusBadRequest, code: "invalid_input",
					message: "A note is required to resolve a change: say what you found in MLM Soft's back office."}, back)
				return
			}
			switch mlmsoft.Resolution(in.Resolution) {
			case mlmsoft.ResolveApplied:
				what = ActionResolveApplied
				msg = fmt.Sprintf("Change %d is marked delivered (applied in MLM Soft); the queue moves on.", id)
			case mlmsoft.ResolveResend:
				what = ActionResolveResend
				msg = fmt.Sprintf("Change %d will be sent again.", id)
			default:
				c.refuse(w, r, what, by, problem{status: http.StatusBadRequest, code: "invalid_input",
					message: fmt.Sprintf("The resolution must be %q or %q.", mlmsoft.ResolveApplied, mlmsoft.ResolveResend)}, back)
				return
			}
			ch, err = c.p.ResolveVolume(r.Context(), id, mlmsoft.Resolution(in.Resolution), by, in.Note)
		case actSkip:
			what = ActionSkip
			if in.Note == "" {
				c.refuse(w, r, what, by, problem{status: http.StatusBadRequest, code: "invalid_input",
					message: "A note is required to skip a change: say why it must never be delivered."}, back)
				return
			}
			ch, err = c.p.SkipVolume(r.Context(), id, by, in.Note)
			msg = fmt.Sprintf("Change %d is skipped: it will never be sent; the queue moves on.", id)
		}
		if err != nil {
			c.refuse(w, r, what, by, problemOf(err, c.volumeErrorMessage(r, id, what, err)), back)
			return
		}
		c.log.Info("console action", "action", what, "change", id, "user", ch.UserID, "order", ch.OrderID,
			"state", string(ch.State), "by", by, "note", in.Note)
		v := changeOf(ch, c.timeout)
		c.done(w, r, ActionResult{OK: true, Message: msg, Change: &v}, back)
	}
}

// volumeErrorMessage says in plain words why a volume action failed.
func (c *console) volumeErrorMessage(r *http.Request, id int64, what string, err error) string {
	switch {
	case errors.Is(err, mlmsoft.ErrNotFound):
		return fmt.Sprintf("There is no volume change %d.", id)
	case errors.Is(err, mlmsoft.ErrWrongState):
		want := map[string]string{
			ActionRetry: "parked", ActionResolveApplied: "uncertain", ActionResolveResend: "uncertain", ActionSkip: "parked or uncertain",
		}[what]
		if ch, gerr := c.getChange(r, id); gerr == nil {
			return fmt.Sprintf("Change %d is %s, not %s: nothing was done.", id, ch.State, want)
		}
		return fmt.Sprintf("Change %d is not %s: nothing was done.", id, want)
	case errors.Is(err, mlmsoft.ErrConflict):
		return fmt.Sprintf("Change %d changed while the action was taken: nothing was done. Look at it again.", id)
	}
	return ""
}

// retryLink answers POST /user/retry-link?id=U.
func (c *console) retryLink(w http.ResponseWriter, r *http.Request) {
	const what = ActionRetryLink
	id := r.URL.Query().Get("id")
	defBack := "user?id=" + url.QueryEscape(id)
	in, by, ok := c.begin(w, r, what, defBack)
	if !ok {
		return
	}
	if id == "" {
		id = r.PostForm.Get("id")
		defBack = "user?id=" + url.QueryEscape(id)
	}
	back := cleanBack(in.Back)
	if in.Back == "" {
		back = defBack
	}
	if id == "" {
		c.refuse(w, r, what, by, problem{status: http.StatusBadRequest, code: "invalid_input",
			message: "Give the host user id whose link to retry (the id parameter)."}, back)
		return
	}
	l, err := c.p.RetryLink(r.Context(), id, by, in.Note)
	if err != nil {
		var msg string
		switch {
		case errors.Is(err, mlmsoft.ErrNotFound):
			msg = fmt.Sprintf("There is no user %q.", id)
		case errors.Is(err, mlmsoft.ErrWrongState):
			if cur, gerr := c.p.Link(r.Context(), id); gerr == nil {
				msg = fmt.Sprintf("The link of user %q is %s, not failed: nothing was done.", id, cur.State)
			}
		case errors.Is(err, mlmsoft.ErrConflict):
			msg = fmt.Sprintf("The link of user %q changed while the action was taken: nothing was done. Look at it again.", id)
		case errors.Is(err, mlmsoft.ErrMisconfigured):
			msg = "MLM Soft refuses the integration's configuration, so it could not be asked whether the login exists: nothing changed. See the overview."
		case errors.Is(err, mlmsoft.ErrUpstreamUnavailable):
			msg = "MLM Soft could not be reached to ask whether the login exists: nothing changed. Try again later."
		}
		c.refuse(w, r, what, by, problemOf(err, msg), back)
		return
	}
	c.log.Info("console action", "action", what, "user", id, "state", string(l.State), "by", by, "note", in.Note)
	var msg string
	switch l.State {
	case mlmsoft.LinkLinked:
		msg = fmt.Sprintf("User %q is linked to MLM Soft account %d (MLM Soft has the login).", id, l.AccountID)
	case mlmsoft.LinkCreated:
		msg = fmt.Sprintf("MLM Soft has the login of user %q: the link waits for its account id.", id)
	default:
		msg = fmt.Sprintf("MLM Soft has no account for user %q: it will be created again.", id)
	}
	v := linkOf(l)
	c.done(w, r, ActionResult{OK: true, Message: msg, Link: &v}, back)
}
