package grokweb

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// chatBody is the JSON body of a new conversation or a follow-up. The
// fixed values are those the web app sends for a private chat without
// memory.
type chatBody struct {
	Temporary bool `json:"temporary"`

	// One selector style is set, per Config.Selector.
	ModeID      string `json:"modeId,omitempty"`
	ModelName   string `json:"modelName,omitempty"`
	ModelMode   string `json:"modelMode,omitempty"`
	IsReasoning *bool  `json:"isReasoning,omitempty"`

	Message           string   `json:"message"`
	ParentResponseID  string   `json:"parentResponseId,omitempty"`
	FileAttachments   []string `json:"fileAttachments"`
	ImageAttachments  []string `json:"imageAttachments"`
	DisableSearch     bool     `json:"disableSearch"`
	EnableImageGen    bool     `json:"enableImageGeneration"`
	EnableImageStream bool     `json:"enableImageStreaming"`
	ImageGenCount     int      `json:"imageGenerationCount"`
	ReturnImageBytes  bool     `json:"returnImageBytes"`
	ReturnRawGrok     bool     `json:"returnRawGrokInXaiRequest"`
	ForceConcise      bool     `json:"forceConcise"`
	ToolOverrides     struct{} `json:"toolOverrides"`
	EnableSideBySide  bool     `json:"enableSideBySide"`
	SendFinalMetadata bool     `json:"sendFinalMetadata"`
	DisableFollowUps  bool     `json:"disableTextFollowUps"`
	DisableMemory     bool     `json:"disableMemory"`
	ForceSideBySide   bool     `json:"forceSideBySide"`
	IsAsyncChat       bool     `json:"isAsyncChat"`
	DisableSelfHarmSC bool     `json:"disableSelfHarmShortCircuit"`
	CollectionIDs     []string `json:"collectionIds"`
	DisabledConnIDs   []string `json:"disabledConnectorIds"`
	ResponseMetadata  struct{} `json:"responseMetadata"`
	DeviceEnvInfo     device   `json:"deviceEnvInfo"`
}

type device struct {
	DarkMode         bool `json:"darkModeEnabled"`
	DevicePixelRatio int  `json:"devicePixelRatio"`
	ScreenWidth      int  `json:"screenWidth"`
	ScreenHeight     int  `json:"screenHeight"`
	ViewportWidth    int  `json:"viewportWidth"`
	ViewportHeight   int  `json:"viewportHeight"`
}

// legacyModels maps mode ids to the modelName and modelMode pair that
// clients sent before modeId existed (as of May 2026). Other model ids are
// sent as modelName alone.
var legacyModels = map[string][2]string{
	"auto":   {"grok-420", "MODEL_MODE_AUTO"},
	"fast":   {"grok-420", "MODEL_MODE_FAST"},
	"expert": {"grok-420", "MODEL_MODE_EXPERT"},
	"heavy":  {"grok-420", "MODEL_MODE_HEAVY"},
}

// newChatBody builds the request body for req with the uploaded file ids.
func (c *Client) newChatBody(req upstream.ChatRequest, fileIDs []string) chatBody {
	b := chatBody{
		Temporary:         true,
		Message:           prompt(req),
		FileAttachments:   append([]string{}, fileIDs...),
		ImageAttachments:  []string{},
		EnableImageGen:    true,
		EnableImageStream: true,
		ImageGenCount:     2,
		EnableSideBySide:  true,
		SendFinalMetadata: true,
		DisableMemory:     true,
		CollectionIDs:     []string{},
		DisabledConnIDs:   []string{},
		DeviceEnvInfo: device{DevicePixelRatio: 2, ScreenWidth: 1920, ScreenHeight: 1080,
			ViewportWidth: 1920, ViewportHeight: 960},
	}
	if req.ConversationID != "" {
		b.ParentResponseID = req.ParentResponseID
	}

	switch c.selector {
	case SelectorModelName:
		b.ModelName = req.Model
		if legacy, ok := legacyModels[req.Model]; ok {
			b.ModelName = legacy[0]
		}
		reasoning := req.Model == "expert" || req.Model == "heavy"
		b.IsReasoning = &reasoning
	case SelectorModelMode:
		b.ModelName = req.Model
		if legacy, ok := legacyModels[req.Model]; ok {
			b.ModelName, b.ModelMode = legacy[0], legacy[1]
		}
	default:
		b.ModeID = req.Model
	}
	return b
}

// chatPath returns the REST path of a chat: a new conversation, or a
// follow-up response in an existing one.
func chatPath(req upstream.ChatRequest) string {
	if req.ConversationID == "" {
		return "/rest/app-chat/conversations/new"
	}
	return "/rest/app-chat/conversations/" + url.PathEscape(req.ConversationID) + "/responses"
}

// uploadImages uploads every image of the request and returns the file
// ids to attach, in message order.
func (c *Client) uploadImages(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber, msgs []upstream.Message) ([]string, error) {
	var ids []string
	for _, m := range msgs {
		for _, img := range m.Images {
			id, err := c.uploadFile(ctx, hc, ck, cred, sc, img, len(ids)+1)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// uploadFile sends one image through the JSON upload endpoint and returns
// its file id (fileMetadataId, or fileId on older builds).
func (c *Client) uploadFile(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber, img upstream.Image, n int) (string, error) {
	const path = "/rest/app-chat/upload-file"
	mediaType := img.MediaType
	if mediaType == "" {
		mediaType = http.DetectContentType(img.Data)
	}
	body, err := json.Marshal(map[string]string{
		"fileName":     fmt.Sprintf("image-%d%s", n, extension(mediaType)),
		"fileMimeType": mediaType,
		"content":      base64.StdEncoding.EncodeToString(img.Data),
	})
	if err != nil {
		return "", err
	}

	var out struct {
		FileMetadataID string `json:"fileMetadataId"`
		FileID         string `json:"fileId"`
	}
	if err := c.postJSON(ctx, hc, ck, cred, sc, path, body, &out); err != nil {
		return "", err
	}
	if out.FileMetadataID != "" {
		return out.FileMetadataID, nil
	}
	if out.FileID != "" {
		return out.FileID, nil
	}
	return "", &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: http.StatusOK,
		Message: "image upload returned no file id"}
}

func extension(mediaType string) string {
	mt, _, _ := mime.ParseMediaType(mediaType)
	if i := strings.IndexByte(mt, '/'); i >= 0 && strings.HasPrefix(mt, "image/") {
		sub := mt[i+1:]
		if sub == "jpeg" {
			sub = "jpg"
		}
		return "." + sub
	}
	return ".bin"
}

// postJSON sends a REST JSON call and decodes a 200 response into out
// (which may be nil). Every failure is an *upstream.Error.
func (c *Client) postJSON(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber, path string, body []byte, out any) error {
	return c.callJSON(ctx, hc, ck, cred, sc, http.MethodPost, path, body, out)
}

func (c *Client) callJSON(ctx context.Context, hc *http.Client, ck Cookie, cred upstream.Credential, sc scrubber, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, c.endpoint(path), rd)
	if err != nil {
		return &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "build request", Err: err}
	}
	c.setAPIHeaders(hreq.Header, ck, cred, method, path)

	resp, err := hc.Do(hreq)
	if err != nil {
		return classifyTransport(ctx, err, false, sc)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp, c.now(), sc); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxLineBytes)).Decode(out); err != nil {
		return &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: resp.StatusCode,
			Message: fmt.Sprintf("decode %s answer", path), Err: sc.wrap(err)}
	}
	return nil
}

// checkResponse returns nil for a usable 200 response and the classified
// error otherwise. A 200 HTML page is a Cloudflare interstitial, not an
// response. On error it has read the start of the body.
func checkResponse(resp *http.Response, now time.Time, sc scrubber) error {
	if resp.StatusCode == http.StatusOK && !isHTML(resp.Header.Get("Content-Type")) {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	e := classifyHTTP(resp, body, now, sc)
	if err != nil && e.Err == nil {
		e.Err = sc.wrap(err)
	}
	return e
}
