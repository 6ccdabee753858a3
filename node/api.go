package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aspen-market/aspen/internal/apitoken"
	"github.com/aspen-market/aspen/internal/buildinfo"
	"github.com/aspen-market/aspen/node/dashboard"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The local HTTP API, versioned under /v1. Every request needs the bearer
// token from the data directory (Authorization: Bearer TOKEN); /metrics
// takes that token or the read-only one in metrics.token. It listens on
// loopback unless Config.APIAllowRemote. SPEC.md lists the endpoints; the
// client package wraps them.

// LoadOrCreateToken reads the API token file, creating a random one
// (mode 0600) when it does not exist.
func LoadOrCreateToken(path string) (string, error) { return apitoken.LoadOrCreate(path) }

// MaxUploadSize bounds one blob uploaded through the API.
const MaxUploadSize = 1 << 30

func (n *Node) startAPI() error {
	ln, err := listen(n.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("node: api listen: %w", err)
	}
	n.apiAddr = ln.Addr().String()
	if err := os.WriteFile(filepath.Join(n.cfg.DataDir, AddrFile), []byte(n.apiAddr+"\n"), 0o600); err != nil {
		ln.Close()
		return err
	}
	n.api = &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second}
	n.go_(func() {
		if err := n.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server", "err", err)
		}
	})
	return nil
}

// Handler returns the API's HTTP handler: /v1/... is token-protected; other
// paths serve the web dashboard's static files.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", n.apiInfo)
	mux.HandleFunc("POST /v1/blobs", n.apiPutBlob)
	mux.HandleFunc("GET /v1/blobs/{cid}", n.apiGetBlob)
	mux.HandleFunc("POST /v1/groups", n.apiSubmit)
	mux.HandleFunc("GET /v1/groups", n.apiGroups)
	mux.HandleFunc("GET /v1/groups/{id}", n.apiGroup)
	mux.HandleFunc("GET /v1/groups/{id}/tasks", n.apiTasks)
	mux.HandleFunc("GET /v1/groups/{id}/results", n.apiResults)
	mux.HandleFunc("POST /v1/groups/{id}/cancel", n.apiCancel)
	mux.HandleFunc("GET /v1/peers", n.apiPeers)
	mux.HandleFunc("GET /v1/offers", n.apiOffers)
	mux.HandleFunc("GET /v1/balance", n.apiBalance)
	mux.HandleFunc("GET /v1/jobs", n.apiJobs)
	api, ui := n.auth(mux), dashboard.Handler()
	mh := n.metrics.handler()
	metrics := apitoken.Require(n.token, apitoken.Require(n.metricsToken, n.refuse, mh).ServeHTTP, mh)
	// The dashboard's static files are public; everything under /v1 needs
	// the token.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") {
			api.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/metrics" {
			// The API token, or the read-only metrics token (Prometheus'
			// credentials_file).
			metrics.ServeHTTP(w, r)
			return
		}
		ui.ServeHTTP(w, r)
	})
}

func (n *Node) auth(next http.Handler) http.Handler {
	return apitoken.Require(n.token, n.refuse, next)
}

func (n *Node) refuse(w http.ResponseWriter, _ *http.Request) {
	writeErr(w, http.StatusUnauthorized, errors.New("missing or wrong API token"))
}

// APIError is the JSON body of every error response.
type APIError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, APIError{Error: err.Error()})
}

func errCode(err error) int {
	switch {
	case errors.Is(err, ErrUnknownGroup), errors.Is(err, ErrUnknownTask), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrInvalidModule), errors.Is(err, protocol.ErrBadAmount),
		errors.Is(err, protocol.ErrBadSpeed), errors.Is(err, protocol.ErrBadCID):
		return http.StatusBadRequest
	case errors.Is(err, ErrRefused):
		return http.StatusPaymentRequired
	case errors.Is(err, ErrNotConsumer), errors.Is(err, ErrNotWorker):
		return http.StatusConflict
	case errors.Is(err, ErrNotReady):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Info describes a node.
type Info struct {
	PeerID   string           `json:"peer_id"`
	Addrs    []string         `json:"addrs"`
	Role     string           `json:"role"`
	Verifier string           `json:"verifier"`
	MinPrice protocol.Micros  `json:"min_price,omitempty"`
	Slots    int              `json:"slots,omitempty"`
	Rating   *protocol.Rating `json:"rating,omitempty"`
	Version  string           `json:"version"` // the API's version
	Build    string           `json:"build"`   // the binary's build: module version, Go version, commit
	// Network: how peers reach the node and its path to the verifier.
	Network Network `json:"network"`
}

// Info returns the node's description.
func (n *Node) Info() Info {
	in := Info{PeerID: n.id.String(), Role: n.cfg.Role.String(), Verifier: n.cfg.Verifier.ID.String(), Version: "v1",
		Build: buildinfo.Read().String(), Network: n.Network()}
	for _, a := range n.Addrs() {
		in.Addrs = append(in.Addrs, a.String())
	}
	if n.w != nil {
		in.MinPrice, in.Slots = n.cfg.MinPrice, n.cfg.Slots
		in.Rating, _ = n.w.Rating()
	}
	return in
}

func (n *Node) apiInfo(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, n.Info()) }

// BlobRef names a stored blob.
type BlobRef struct {
	CID  string `json:"cid"`
	Size int64  `json:"size"`
}

func (n *Node) apiPutBlob(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxUploadSize+1))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if len(body) > MaxUploadSize {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Errorf("blob larger than %d bytes", MaxUploadSize))
		return
	}
	c, err := n.store.PutBlob(body)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusCreated, BlobRef{CID: c.String(), Size: int64(len(body))})
}

func (n *Node) apiGetBlob(w http.ResponseWriter, r *http.Request) {
	c, err := protocol.ParseCID(r.PathValue("cid"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	b, err := n.store.GetBlob(c)
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

// SubmitRequest is the body of POST /v1/groups. The module is a CID of an
// uploaded blob; each input is either a CID of an uploaded blob or its bytes
// (base64 in JSON). Money and speed are decimal strings.
type SubmitRequest struct {
	Name      string      `json:"name,omitempty"`
	Module    string      `json:"module"`
	Inputs    []InputSpec `json:"inputs"`
	MaxPrice  string      `json:"max_price"`
	MinSpeed  string      `json:"min_speed"`
	Replicas  int         `json:"replicas"`
	Timeout   string      `json:"timeout"`
	MaxMemory uint64      `json:"max_memory,omitempty"`
}

// InputSpec is one task input.
type InputSpec struct {
	CID  string `json:"cid,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// SubmitResponse answers POST /v1/groups.
type SubmitResponse struct {
	ID     string      `json:"id"`
	Status GroupStatus `json:"status"`
}

func (n *Node) apiSubmit(w http.ResponseWriter, r *http.Request) {
	var req SubmitRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 256<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad JSON: %v", err))
		return
	}
	spec, err := n.specFromRequest(&req)
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	// The submission outlives the HTTP request: a client that disconnects
	// must not leave a group half-submitted.
	id, err := n.SubmitGroup(n.ctx, spec)
	if err != nil && id == (protocol.ID{}) {
		writeErr(w, errCode(err), err)
		return
	}
	st, _ := n.Group(id)
	if err != nil {
		writeJSON(w, errCode(err), struct {
			SubmitResponse
			Error string `json:"error"`
		}{SubmitResponse{ID: id.String(), Status: st}, err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, SubmitResponse{ID: id.String(), Status: st})
}

func (n *Node) specFromRequest(req *SubmitRequest) (GroupSpec, error) {
	spec := GroupSpec{Name: req.Name, Replicas: req.Replicas, MaxMemory: req.MaxMemory}
	var err error
	mc, err := protocol.ParseCID(req.Module)
	if err != nil {
		return spec, fmt.Errorf("%w: module: %v", ErrBadRequest, err)
	}
	if spec.Module, err = n.store.GetBlob(mc); err != nil {
		return spec, fmt.Errorf("%w: module %s: %v (upload it to /v1/blobs first)", ErrBadRequest, mc, err)
	}
	if spec.MaxPrice, err = protocol.ParseAmount(req.MaxPrice); err != nil {
		return spec, fmt.Errorf("%w: max_price: %v", ErrBadRequest, err)
	}
	spec.MinSpeed = DefaultMinSpeed
	if req.MinSpeed != "" {
		if spec.MinSpeed, err = protocol.ParseSpeed(req.MinSpeed); err != nil {
			return spec, fmt.Errorf("%w: min_speed: %v", ErrBadRequest, err)
		}
	}
	if spec.Replicas == 0 {
		spec.Replicas = 2
	}
	spec.Timeout = 2 * time.Hour
	if req.Timeout != "" {
		if spec.Timeout, err = time.ParseDuration(req.Timeout); err != nil {
			return spec, fmt.Errorf("%w: timeout: %v", ErrBadRequest, err)
		}
	}
	for i, in := range req.Inputs {
		switch {
		case in.CID != "" && in.Data != nil:
			return spec, fmt.Errorf("%w: input %d has both cid and data", ErrBadRequest, i)
		case in.CID != "":
			c, err := protocol.ParseCID(in.CID)
			if err != nil {
				return spec, fmt.Errorf("%w: input %d: %v", ErrBadRequest, i, err)
			}
			b, err := n.store.GetBlob(c)
			if err != nil {
				return spec, fmt.Errorf("%w: input %d (%s): %v", ErrBadRequest, i, c, err)
			}
			spec.Inputs = append(spec.Inputs, b)
		default:
			spec.Inputs = append(spec.Inputs, in.Data)
		}
	}
	return spec, nil
}

func (n *Node) groupID(w http.ResponseWriter, r *http.Request) (protocol.ID, bool) {
	id, err := protocol.ParseID(r.PathValue("id"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return id, false
	}
	return id, true
}

func (n *Node) apiGroups(w http.ResponseWriter, r *http.Request) {
	gs, err := n.Groups()
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, gs)
}

func (n *Node) apiGroup(w http.ResponseWriter, r *http.Request) {
	id, ok := n.groupID(w, r)
	if !ok {
		return
	}
	g, err := n.Group(id)
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (n *Node) apiTasks(w http.ResponseWriter, r *http.Request) {
	id, ok := n.groupID(w, r)
	if !ok {
		return
	}
	ts, err := n.Tasks(id)
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (n *Node) apiCancel(w http.ResponseWriter, r *http.Request) {
	id, ok := n.groupID(w, r)
	if !ok {
		return
	}
	if err := n.Cancel(r.Context(), id); err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	g, _ := n.Group(id)
	writeJSON(w, http.StatusOK, g)
}

// PeerInfo is one connected peer.
type PeerInfo struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
	// Topics are the gossip topics this node knows the peer subscribes
	// to (it sends the peer what it publishes there).
	Topics []string `json:"topics,omitempty"`
}

func (n *Node) apiPeers(w http.ResponseWriter, r *http.Request) {
	out := []PeerInfo{}
	lh := n.host.Libp2p()
	topics := map[peer.ID][]string{}
	for _, t := range []string{protocol.TopicOffers, protocol.TopicBids} {
		for _, p := range n.host.TopicPeers(t) {
			topics[p] = append(topics[p], t)
		}
	}
	for _, p := range n.host.Peers() {
		pi := PeerInfo{ID: p.String(), Topics: topics[p]}
		for _, a := range lh.Peerstore().Addrs(p) {
			pi.Addrs = append(pi.Addrs, a.String())
		}
		out = append(out, pi)
	}
	writeJSON(w, http.StatusOK, out)
}

// OfferInfo is an offer seen on gossip.
type OfferInfo struct {
	Worker   string           `json:"worker"`
	MinPrice protocol.Micros  `json:"min_price"`
	Capacity uint32           `json:"capacity"`
	Slots    uint32           `json:"slots"`
	Rating   *protocol.Rating `json:"rating,omitempty"`
	Expires  int64            `json:"expires"`
	Seen     int64            `json:"seen"`
}

// Offers returns the unexpired offers this node has seen.
func (n *Node) Offers() []OfferInfo {
	now := n.now().UnixMilli()
	n.offersMu.Lock()
	defer n.offersMu.Unlock()
	out := []OfferInfo{}
	for w, o := range n.offers {
		if o.Offer.Expires < now {
			delete(n.offers, w)
			continue
		}
		out = append(out, OfferInfo{Worker: w.String(), MinPrice: o.Offer.MinPrice, Capacity: o.Offer.Capacity, Slots: o.Offer.Slots,
			Rating: o.Rating, Expires: o.Offer.Expires, Seen: o.Seen.UnixMilli()})
	}
	return out
}

func (n *Node) apiOffers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Offers())
}

func (n *Node) apiBalance(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	st, err := n.Statement(ctx)
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (n *Node) apiJobs(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	jobs, err := n.Jobs(limit)
	if err != nil {
		writeErr(w, errCode(err), err)
		return
	}
	if jobs == nil {
		jobs = []JobRecord{}
	}
	writeJSON(w, http.StatusOK, jobs)
}
