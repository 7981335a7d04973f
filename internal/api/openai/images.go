package openai

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/catalog"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Image generation. Grok web has no image endpoint: it draws images inside
// an ordinary chat and links them on its asset host, which serves them only
// with the session's cookie. So /v1/images/generations runs such a chat and
// either downloads the images (b64_json) or returns links to the gateway's
// own /v1/images/files/{token}, whose token seals the session and the asset
// path. A link's holder can fetch that one image until the token expires,
// and nothing else: the gateway never fetches a host the caller names.

// Limits of one image request.
const (
	MaxImagesPerRequest = 4        // largest n
	MaxImagePromptBytes = 32 << 10 // prompt size
	MaxImageFileBytes   = 20 << 20 // one downloaded image
	imagesPerGrokChat   = 2        // images the Grok web client asks for in one chat
)

// DefaultImageURLTTL is how long an image link stays valid by default.
const DefaultImageURLTTL = time.Hour

// ImagesRequest is an OpenAI image generation request.
type ImagesRequest struct {
	Model          string `json:"model"`
	Prompt         string `json:"prompt"`
	N              *int   `json:"n"`
	Size           string `json:"size"`
	ResponseFormat string `json:"response_format"`
	User           string `json:"user"`
}

type imagesResponse struct {
	Created int64       `json:"created"`
	Data    []imageData `json:"data"`
}

type imageData struct {
	URL     string `json:"url,omitempty"`
	B64JSON string `json:"b64_json,omitempty"`
}

// AssetFetcher downloads a generated image from the upstream's own asset
// host with a session's credential. The Grok web client implements it.
type AssetFetcher interface {
	FetchAsset(ctx context.Context, c upstream.Credential, path string) (io.ReadCloser, string, error)
}

// imageJob is one image request after validation.
type imageJob struct {
	prompt string
	n      int
	format string // "url" or "b64_json"
	base   string // scheme and host of the gateway as the client reached it
}

// ServeImages handles POST /v1/images/generations.
func (h *Handler) ServeImages(w http.ResponseWriter, r *http.Request) error {
	call := &chatCall{start: h.Now()}
	call.created = call.start.Unix()
	call.rec = h.newRecord(r, call.start)
	call.base, call.route = h.Log, "images_generations"
	if err := h.Audit.Admit(); err != nil {
		h.Metrics.RateLimited.WithLabelValues("audit_spool").Inc()
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: "audit_unavailable",
			Message: "The gateway cannot record requests right now; try again shortly.", RetryAfter: 5 * time.Second, Err: err}
	}
	err := h.images(w, r, call)
	h.finishRecord(call, err)
	return err
}

func (h *Handler) images(w http.ResponseWriter, r *http.Request, call *chatCall) error {
	var req ImagesRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	call.rec.Model, call.rec.Prompt = req.Model, req.Prompt
	if req.Model == "" {
		req.Model = "grok-imagine"
		call.rec.Model = req.Model
	}
	job, err := h.imageJob(r, req)
	if err != nil {
		return err
	}
	model, err := h.resolveImageModel(r.Context(), req.Model)
	if err != nil {
		return err
	}
	call.model = model

	data, err := h.generate(r.Context(), call, job)
	if err != nil {
		return err
	}
	call.rec.FinishReason = "stop"
	call.rec.Response = fmt.Sprintf("[%d generated images, %s]", len(data), job.format)
	writeJSON(w, http.StatusOK, imagesResponse{Created: call.created, Data: data})
	return nil
}

// imageJob validates the request fields.
func (h *Handler) imageJob(r *http.Request, req ImagesRequest) (imageJob, error) {
	job := imageJob{prompt: strings.TrimSpace(req.Prompt), n: 1, format: req.ResponseFormat, base: gatewayOrigin(r)}
	switch {
	case job.prompt == "":
		return job, BadRequest("prompt", "missing_required_parameter", "You must provide a prompt.")
	case len(req.Prompt) > MaxImagePromptBytes:
		return job, BadRequest("prompt", "invalid_value", "The prompt is %d bytes, above the limit of %d.", len(req.Prompt), MaxImagePromptBytes)
	}

	if req.N != nil {
		job.n = *req.N
	}
	if job.n < 1 || job.n > MaxImagesPerRequest {
		return job, BadRequest("n", "invalid_value", "n must be between 1 and %d, got %d.", MaxImagesPerRequest, job.n)
	}

	// Grok picks the size of the images it draws, so no size can be
	// promised other than its own.
	switch req.Size {
	case "", "auto":
	default:
		return job, BadRequest("size", "unsupported_value",
			"Size %q is not supported: Grok chooses the image size. Omit size or send \"auto\".", truncate(req.Size, 32))
	}

	switch job.format {
	case "":
		job.format = "url"
	case "url", "b64_json":
	default:
		return job, BadRequest("response_format", "invalid_value",
			"Invalid response_format %q: expected url or b64_json.", truncate(job.format, 32))
	}
	if job.format == "url" && h.ImageURLs == nil {
		return job, BadRequest("response_format", "unsupported_value", "Image links are turned off on this gateway; send response_format b64_json.")
	}
	return job, nil
}

// gatewayOrigin is the scheme and host the client used to reach us: the
// scheme a trusted proxy reported in X-Forwarded-Proto, else that of the
// connection.
func gatewayOrigin(r *http.Request) string {
	if scheme := observe.Scheme(r.Context()); scheme != "" {
		return scheme + "://" + r.Host
	}
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// resolveImageModel finds an image model the caller may use.
func (h *Handler) resolveImageModel(ctx context.Context, id string) (catalog.Model, error) {
	model, ok := h.Catalog.Lookup(id)
	if !ok {
		return model, ModelNotFound(id)
	}
	if p, ok := auth.FromContext(ctx); ok && !allowed(p, model) {
		return model, ModelNotFound(id)
	}
	if model.Kind != catalog.KindImage {
		return model, BadRequest("model", "invalid_model",
			"Model %q is a chat model; call /v1/chat/completions, or use an image model such as grok-imagine.", id)
	}
	return model, nil
}

// generate tries the model's routes in order of preference until one has
// a session and a client that can draw.
func (h *Handler) generate(ctx context.Context, call *chatCall, job imageJob) ([]imageData, error) {
	var firstErr error
	for _, route := range call.model.Routes {
		client := h.Clients[route.Provider]
		var data []imageData
		var err error
		switch ic, ok := client.(upstream.ImageClient); {
		case route.Provider == store.ProviderGrok && client != nil:
			data, err = h.grokImages(ctx, call, route, job)
		case ok:
			data, err = h.apiImages(ctx, call, ic, route, job)
		default:
			continue
		}
		if err == nil {
			return data, nil
		}
		var ns *pool.NoSessionError
		if !errors.As(err, &ns) {
			return nil, clientError(err)
		}
		firstErr = preferError(firstErr, err)
	}
	if firstErr == nil {
		firstErr = &pool.NoSessionError{}
	}
	return nil, clientError(firstErr)
}

// grokImageMode is the chat mode that draws on Grok web. The image model's
// route may name a chat mode; any other name ("imagine") draws in fast
// mode, as the web app does.
func grokImageMode(upstreamModel string) string {
	switch upstreamModel {
	case "auto", "fast", "expert", "heavy":
		return upstreamModel
	}
	return "fast"
}

// grokImages runs as many Grok web chats as it takes to get job.n images.
func (h *Handler) grokImages(ctx context.Context, call *chatCall, route catalog.Route, job imageJob) ([]imageData, error) {
	fetcher, _ := h.Clients[route.Provider].(AssetFetcher)
	if job.format == "b64_json" && fetcher == nil {
		return nil, fmt.Errorf("grok client cannot download assets")
	}
	mode := grokImageMode(route.Upstream)
	var out []imageData
	for chats := 0; len(out) < job.n && chats < job.n; chats++ {
		refs, lease, err := h.grokDraw(ctx, call, mode, job.prompt)
		if err != nil {
			return nil, err
		}
		for _, ref := range refs[:min(len(refs), job.n-len(out))] {
			d, err := h.deliver(ctx, fetcher, lease, ref, job)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// grokDraw runs one image chat, retrying on other sessions as chat
// completions do. It returns the images and the lease (released) whose
// session owns them.
func (h *Handler) grokDraw(ctx context.Context, call *chatCall, mode, prompt string) ([]upstream.ImageRef, *pool.Lease, error) {
	var tried []string
	var lastErr error
	for i := 0; i < h.attemptLimit(); i++ {
		lease, err := h.Pool.Acquire(ctx, pool.AcquireRequest{Provider: store.ProviderGrok, Model: mode, Exclude: tried})
		if err != nil {
			if lastErr == nil {
				lastErr = err
			}
			break
		}
		tried = append(tried, lease.SessionID)
		began := h.Now()
		refs, err := h.drawOnce(ctx, lease, mode, prompt)
		h.release(call, lease, err, began)
		if err == nil {
			return refs, lease, nil
		}
		lastErr = err
		if !upstream.OutcomeOf(err).Retryable() || ctx.Err() != nil {
			break
		}
		call.logger().Warn("retry on another session", "attempt", i+1, "session_id", lease.SessionID,
			"outcome", string(upstream.OutcomeOf(err)))
	}
	return nil, nil, lastErr
}

func (h *Handler) attemptLimit() int {
	if h.MaxAttempts <= 0 {
		return 3
	}
	return h.MaxAttempts
}

// drawOnce runs one chat that requests images and collects the finished
// ones. Web clients request an image with a one-line "Drawing:" prompt.
func (h *Handler) drawOnce(ctx context.Context, lease *pool.Lease, mode, prompt string) ([]upstream.ImageRef, error) {
	text := "Drawing: " + strings.Join(strings.Fields(prompt), " ")
	stream, err := h.Clients[store.ProviderGrok].Chat(ctx, lease.Credential, upstream.ChatRequest{
		Model: mode, Messages: []upstream.Message{{Role: "user", Text: text}}})
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var refs []upstream.ImageRef
	for {
		ev, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if ev.Kind == upstream.EventImage && ev.Image != nil {
			refs = append(refs, *ev.Image)
		}
		if ev.Kind == upstream.EventDone {
			break
		}
	}
	if len(refs) == 0 {
		return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest,
			Message: "no image was generated for this prompt; it may have been withheld by moderation"}
	}
	return refs, nil
}

// apiImages calls a provider's image API.
func (h *Handler) apiImages(ctx context.Context, call *chatCall, ic upstream.ImageClient, route catalog.Route, job imageJob) ([]imageData, error) {
	lease, err := h.Pool.Acquire(ctx, pool.AcquireRequest{Provider: route.Provider, Model: route.Upstream})
	if err != nil {
		return nil, err
	}
	began := h.Now()
	refs, err := ic.Images(ctx, lease.Credential, upstream.ImageRequest{Model: route.Upstream, Prompt: job.prompt, N: job.n})
	h.release(call, lease, err, began)
	if err != nil {
		return nil, err
	}
	var out []imageData
	for _, ref := range refs[:min(len(refs), job.n)] {
		switch {
		case len(ref.Data) > 0 && job.format == "b64_json":
			out = append(out, imageData{B64JSON: base64.StdEncoding.EncodeToString(ref.Data)})
		case len(ref.Data) > 0 && job.format == "url" && h.ImageURLs != nil:
			// The bytes stay in this replica's memory until the link
			// expires, so the link points at the gateway as for Grok web.
			out = append(out, imageData{URL: job.base + "/v1/images/files/" + h.ImageURLs.sign(lease.SessionID, h.ImageURLs.keep(ref.Data))})
		case ref.URL != "" && job.format == "url":
			// NOTE: an upstream that returns only a link keeps its own
			// image host in the answer; the xAI client asks for bytes.
			out = append(out, imageData{URL: ref.URL})
		default:
			return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable,
				Message: fmt.Sprintf("the image API answered without the %s form", job.format)}
		}
	}
	return out, nil
}

// deliver turns one generated image into what the client asked for: a
// signed link, or the bytes in base64.
func (h *Handler) deliver(ctx context.Context, fetcher AssetFetcher, lease *pool.Lease, ref upstream.ImageRef, job imageJob) (imageData, error) {
	if job.format == "url" {
		if ref.URL == "" {
			return imageData{}, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: "image without an asset path"}
		}
		return imageData{URL: job.base + "/v1/images/files/" + h.ImageURLs.sign(lease.SessionID, ref.URL)}, nil
	}
	data := ref.Data
	if len(data) == 0 {
		var err error
		if data, _, err = fetchImage(ctx, fetcher, lease.Credential, ref.URL); err != nil {
			return imageData{}, err
		}
	}
	if imageType(data) == "" {
		return imageData{}, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: "the generated image is not PNG, JPEG or WebP"}
	}
	return imageData{B64JSON: base64.StdEncoding.EncodeToString(data)}, nil
}

// fetchImage downloads one asset and checks that it is an image.
func fetchImage(ctx context.Context, fetcher AssetFetcher, cred upstream.Credential, path string) ([]byte, string, error) {
	body, _, err := fetcher.FetchAsset(ctx, cred, path)
	if err != nil {
		return nil, "", err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, MaxImageFileBytes+1))
	if err != nil {
		return nil, "", &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: "read image asset", Err: err}
	}
	if len(data) > MaxImageFileBytes {
		return nil, "", &upstream.Error{Outcome: upstream.OutcomeUnavailable,
			Message: fmt.Sprintf("image asset is larger than %d bytes", MaxImageFileBytes)}
	}
	mediaType := imageType(data)
	if mediaType == "" {
		return nil, "", &upstream.Error{Outcome: upstream.OutcomeUnavailable, Message: "image asset is not PNG, JPEG or WebP"}
	}
	return data, mediaType, nil
}

// imageType returns the media type of a PNG, JPEG or WebP image from its
// first bytes, or "" for anything else.
func imageType(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "image/jpeg"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return ""
}

// ServeImageFile handles GET /v1/images/files/{token}. It needs no API
// key: the token is the credential, and it names one asset of one session.
func (h *Handler) ServeImageFile(w http.ResponseWriter, r *http.Request) error {
	if h.ImageURLs == nil {
		return imageLinkNotFound()
	}
	t, err := h.ImageURLs.open(r.PathValue("token"))
	if errors.Is(err, errImageLinkExpired) {
		return imageLinkNotFound()
	}
	if err != nil {
		return &Error{Status: http.StatusForbidden, Type: TypePermission, Code: "invalid_image_link",
			Message: "This image link is not valid."}
	}
	if data, ok := h.ImageURLs.kept(t.Path); ok {
		writeImage(w, data, imageType(data), time.Unix(t.Expires, 0).Sub(h.Now()))
		return nil
	} else if isKeptPath(t.Path) {
		// The bytes were kept by another replica, or dropped to make room.
		return imageLinkNotFound()
	}
	fetcher, ok := h.Clients[store.ProviderGrok].(AssetFetcher)
	if !ok {
		return imageLinkNotFound()
	}

	lease, err := h.Pool.Acquire(r.Context(), pool.AcquireRequest{Provider: store.ProviderGrok, Prefer: t.Session})
	if err != nil {
		return clientError(err)
	}
	if lease.SessionID != t.Session {
		// Only the session that generated the image may download it.
		h.Pool.Release(lease, pool.Result{Err: &upstream.Error{Outcome: upstream.OutcomeCanceled, Message: "not the owner"}})
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: "image_session_unavailable",
			Message: "The session that generated this image is busy or resting; retry shortly.", RetryAfter: 10 * time.Second}
	}
	began := h.Now()
	data, mediaType, err := fetchImage(r.Context(), fetcher, lease.Credential, t.Path)
	h.Pool.Release(lease, pool.Result{Err: err, Latency: h.Now().Sub(began)})
	if err != nil {
		return clientError(err)
	}

	writeImage(w, data, mediaType, time.Unix(t.Expires, 0).Sub(h.Now()))
	return nil
}

// writeImage sends image bytes that clients may cache until the link
// expires.
func writeImage(w http.ResponseWriter, data []byte, mediaType string, left time.Duration) {
	hdr := w.Header()
	hdr.Set("Content-Type", mediaType)
	hdr.Set("Content-Length", strconv.Itoa(len(data)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", fmt.Sprintf("private, max-age=%d", max(0, int(left.Seconds()))))
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

func imageLinkNotFound() *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeNotFound, Code: "image_link_expired",
		Message: "This image link has expired or does not exist; generate the image again."}
}

// ImageURLs seals and opens the tokens of image links. A token is the
// AES-256-GCM encryption of the owning session id, the asset path and
// the expiry time, so it can be neither forged nor read. It is safe for
// concurrent use.
type ImageURLs struct {
	aead cipher.AEAD
	ttl  time.Duration
	now  func() time.Time

	mu        sync.Mutex
	keptByID  map[string]keptImage // images whose upstream returned bytes
	keptOrder []string             // ids, oldest first
	keptBytes int
}

// keptImage is image bytes held for a link until it expires.
type keptImage struct {
	data    []byte
	expires time.Time
}

// MaxKeptImageBytes bounds the image bytes held in memory for links to
// images that an upstream returned as bytes. The oldest go first.
const MaxKeptImageBytes = 256 << 20

const keptPrefix = "kept:"

func isKeptPath(path string) bool { return strings.HasPrefix(path, keptPrefix) }

// keep holds data until its link expires and returns the path to sign.
func (u *ImageURLs) keep(data []byte) string {
	id := make([]byte, 16)
	rand.Read(id)
	key := keptPrefix + hex.EncodeToString(id)
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.keptByID == nil {
		u.keptByID = map[string]keptImage{}
	}
	u.keptByID[key] = keptImage{data: data, expires: now.Add(u.ttl)}
	u.keptOrder = append(u.keptOrder, key)
	u.keptBytes += len(data)
	for len(u.keptOrder) > 0 {
		oldest := u.keptByID[u.keptOrder[0]]
		if u.keptBytes <= MaxKeptImageBytes && now.Before(oldest.expires) {
			break
		}
		u.keptBytes -= len(oldest.data)
		delete(u.keptByID, u.keptOrder[0])
		u.keptOrder = u.keptOrder[1:]
	}
	return key
}

// kept returns the bytes held under path, if any.
func (u *ImageURLs) kept(path string) ([]byte, bool) {
	if !isKeptPath(path) {
		return nil, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	img, ok := u.keptByID[path]
	if !ok || !u.now().Before(img.expires) {
		return nil, false
	}
	return img.data, true
}

// NewImageURLs returns a token sealer with a 32-byte key and the link
// lifetime ttl (DefaultImageURLTTL when zero). Replicas that share the key
// accept each other's links.
func NewImageURLs(key []byte, ttl time.Duration, now func() time.Time) (*ImageURLs, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("image link key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("image link key: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultImageURLTTL
	}
	if now == nil {
		now = time.Now
	}
	return &ImageURLs{aead: aead, ttl: ttl, now: now}, nil
}

// imageTicket is the sealed content of a token.
type imageTicket struct {
	Session string `json:"s"`
	Path    string `json:"p"`
	Expires int64  `json:"e"` // unix seconds
}

// imageLinkAD binds tokens to their use, so no other ciphertext under the
// same key opens as one.
var imageLinkAD = []byte("grokproxy image link v1")

var (
	errImageLinkForged  = errors.New("image link does not open")
	errImageLinkExpired = errors.New("image link expired")
)

func (u *ImageURLs) sign(session, path string) string {
	plain, _ := json.Marshal(imageTicket{Session: session, Path: path, Expires: u.now().Add(u.ttl).Unix()})
	nonce := make([]byte, u.aead.NonceSize(), u.aead.NonceSize()+len(plain)+u.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(u.aead.Seal(nonce, nonce, plain, imageLinkAD))
}

func (u *ImageURLs) open(token string) (imageTicket, error) {
	var t imageTicket
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < u.aead.NonceSize() {
		return t, errImageLinkForged
	}
	n := u.aead.NonceSize()
	plain, err := u.aead.Open(nil, raw[:n], raw[n:], imageLinkAD)
	if err != nil {
		return t, errImageLinkForged
	}
	if err := json.Unmarshal(plain, &t); err != nil || t.Session == "" || t.Path == "" {
		return t, errImageLinkForged
	}
	if !u.now().Before(time.Unix(t.Expires, 0)) {
		return t, errImageLinkExpired
	}
	return t, nil
}
