package grokweb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// frame is one JSON object of the chat stream. The REST stream wraps each
// in {"result": …}, and errors come as {"error": …} lines. Exactly one of the
// pointer fields is set.
type frame struct {
	Conversation *conversationFrame
	Response     *responseFrame
	Title        *titleFrame
	Error        *errorBody
}

type conversationFrame struct {
	ConversationID string `json:"conversationId"`
}

type titleFrame struct {
	NewTitle string `json:"newTitle"`
}

// responseFrame holds the keys of result.response that the client reads.
type responseFrame struct {
	ResponseID string  `json:"responseId"`
	Token      *string `json:"token"`
	IsThinking bool    `json:"isThinking"`
	IsSoftStop bool    `json:"isSoftStop"`
	MessageTag string  `json:"messageTag"`

	UserResponse   *responseObject  `json:"userResponse"`
	ModelResponse  *responseObject  `json:"modelResponse"`
	CardAttachment *cardAttachment  `json:"cardAttachment"`
	ImageGen       *imageGeneration `json:"streamingImageGenerationResponse"`
	FinalMetadata  json.RawMessage  `json:"finalMetadata"`
	Error          *errorBody       `json:"error"`
}

// responseObject is a whole conversation turn (userResponse or
// modelResponse).
type responseObject struct {
	ResponseID         string       `json:"responseId"`
	Message            string       `json:"message"`
	Sender             string       `json:"sender"`
	ParentResponseID   string       `json:"parentResponseId"`
	Model              string       `json:"model"`
	RequestMetadata    *requestMeta `json:"requestMetadata"`
	GeneratedImageURLs []string     `json:"generatedImageUrls"`
	StreamErrors       []errorBody  `json:"streamErrors"`
}

type requestMeta struct {
	Model string `json:"model"`
}

type cardAttachment struct {
	JSONData string `json:"jsonData"`
}

// imageGeneration is the streamingImageGenerationResponse frame and also
// the image_chunk of a generated image card.
type imageGeneration struct {
	ImageID   string `json:"imageId"`
	ImageUUID string `json:"imageUuid"`
	ImageURL  string `json:"imageUrl"`
	ImageURL2 string `json:"image_url"`
	Progress  int    `json:"progress"`
	IsFinal   bool   `json:"isFinal"`
	Moderated bool   `json:"moderated"`
}

func (g *imageGeneration) id() string {
	if g.ImageUUID != "" {
		return g.ImageUUID
	}
	return g.ImageID
}

func (g *imageGeneration) url() string {
	if g.ImageURL != "" {
		return g.ImageURL
	}
	return g.ImageURL2
}

// final reports whether the image is complete, not a partial preview.
func (g *imageGeneration) final() bool { return g.Progress >= 100 || g.IsFinal }

// card is the decoded jsonData of a cardAttachment frame.
type card struct {
	ID          string           `json:"id"`
	Type        string           `json:"type"`
	CardType    string           `json:"cardType"`
	URL         string           `json:"url"`
	Title       string           `json:"title"`
	ImageChunk  *imageGeneration `json:"image_chunk"`
	ImageChunk2 *imageGeneration `json:"imageChunk"`
}

func (c *card) image() *imageGeneration {
	if c.ImageChunk != nil {
		return c.ImageChunk
	}
	return c.ImageChunk2
}

// errorBody is an error object: a stream error line, result.response.error,
// an entry of modelResponse.streamErrors, or the JSON body of an HTTP
// error. Code is the gRPC-style status code. The same JSON field carries a
// marker string such as "unauthorized:blocked-user" in some bodies.
type errorBody struct {
	Code    int
	Marker  string
	Message string
	// Typed hints seen beside or inside error objects.
	SystemErrCode     string
	UsageLimitReached bool
}

func (e *errorBody) UnmarshalJSON(b []byte) error {
	var raw struct {
		Code              json.RawMessage `json:"code"`
		Message           string          `json:"message"`
		SystemErrCode     string          `json:"systemErrCode"`
		UsageLimitReached json.RawMessage `json:"usageLimitReached"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	e.Message = raw.Message
	e.SystemErrCode = raw.SystemErrCode
	e.UsageLimitReached = len(raw.UsageLimitReached) > 0 && string(raw.UsageLimitReached) != "null"
	if len(raw.Code) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw.Code, &e.Code); err == nil {
		return nil
	}
	// A string code is either a number in quotes or a marker.
	var s string
	if err := json.Unmarshal(raw.Code, &s); err != nil {
		return fmt.Errorf("error code %s is neither a number nor a string", raw.Code)
	}
	if _, err := fmt.Sscanf(s, "%d", &e.Code); err != nil {
		e.Marker = s
	}
	return nil
}

// maxLineBytes caps one stream line. Frames that carry whole answers or
// search results can be large, so the cap is generous at 8 MiB.
const maxLineBytes = 8 << 20

// errNotFrame is returned for a JSON value that is not a stream frame.
var errNotFrame = errors.New("not a stream frame")

// parseFrames decodes one line of the chat stream into frames. It accepts
// what the web app sends (one JSON object per line) and the variants that
// other servers of this protocol send: a "data: " prefix, a "[DONE]" line,
// and several objects on one line. Blank lines, [DONE] and objects that
// are neither a result nor an error yield no frames. On a decode error it
// returns the frames before the bad one.
func parseFrames(line []byte) ([]frame, error) {
	line = bytes.TrimSpace(line)
	if rest, ok := bytes.CutPrefix(line, []byte("data:")); ok {
		line = bytes.TrimSpace(rest)
	}
	if len(line) == 0 || bytes.Equal(line, []byte("[DONE]")) {
		return nil, nil
	}

	var frames []frame
	dec := json.NewDecoder(bytes.NewReader(line))
	for {
		var raw map[string]json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, fmt.Errorf("decode stream frame: %w", err)
		}
		f, err := decodeFrame(raw)
		if errors.Is(err, errNotFrame) {
			continue // an object of a kind this client does not read
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

// decodeFrame turns one top-level object into a frame. Follow-up streams
// may put response keys straight under result ({"result":{"token":…}}),
// so a result without conversation, response or title is read as a
// response.
func decodeFrame(raw map[string]json.RawMessage) (frame, error) {
	if b, ok := raw["error"]; ok && !isNull(b) {
		var e errorBody
		if err := json.Unmarshal(b, &e); err != nil {
			return frame{}, fmt.Errorf("decode error frame: %w", err)
		}
		return frame{Error: &e}, nil
	}
	b, ok := raw["result"]
	if !ok || isNull(b) {
		return frame{}, errNotFrame
	}
	var result map[string]json.RawMessage
	if err := json.Unmarshal(b, &result); err != nil {
		return frame{}, fmt.Errorf("decode result: %w", err)
	}

	var f frame
	var err error
	switch {
	case has(result, "conversation"):
		f.Conversation = new(conversationFrame)
		err = json.Unmarshal(result["conversation"], f.Conversation)
	case has(result, "response"):
		f.Response = new(responseFrame)
		err = json.Unmarshal(result["response"], f.Response)
	case has(result, "title"):
		f.Title = new(titleFrame)
		err = json.Unmarshal(result["title"], f.Title)
	default:
		f.Response = new(responseFrame)
		err = json.Unmarshal(b, f.Response)
	}
	if err != nil {
		return frame{}, fmt.Errorf("decode result: %w", err)
	}
	return f, nil
}

func has(m map[string]json.RawMessage, key string) bool {
	b, ok := m[key]
	return ok && !isNull(b)
}

func isNull(b json.RawMessage) bool { return string(bytes.TrimSpace(b)) == "null" }
