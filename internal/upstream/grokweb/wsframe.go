package grokweb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// WebSocket gateway messages. Every message is one JSON text frame. The
// client wraps its events as {"event":{"type":…}}. Server messages carry
// "type" and "session_id" at the top level and their payload under
// "event". parseWSMessage also accepts the payload at the top level.
const (
	wsSessionCreate   = "session.create"
	wsSessionCreated  = "session.created"
	wsSessionEnded    = "session.ended"
	wsAttached        = "conversation.attached"
	wsItemCreate      = "conversation.item.create"
	wsResponseCreate  = "response.create"
	wsResponseChunk   = "response.chunk"
	wsGrokOutput      = "response.grok.output"
	wsResponseDone    = "response.done"
	wsError           = "error"
	wsPing            = "ping"
	wsPong            = "pong"
	wsOutputTextDelta = "response.output_text.delta"
)

// wsMessage is one server message reduced to what the client acts on.
// frames holds the REST-equivalent frames of a message that belongs to
// the answer, so the stream maps both transports the same way.
type wsMessage struct {
	typ            string
	sessionID      string
	clientEventID  string
	conversationID string
	frames         []frame
}

// wsEnvelope is the JSON shape of a server message.
type wsEnvelope struct {
	Type      string          `json:"type"`
	SessionID string          `json:"session_id"`
	Event     json.RawMessage `json:"event"`
}

// wsPayload is the event body of a server message.
type wsPayload struct {
	Type          string `json:"type"`
	SessionID     string `json:"session_id"`
	ClientEventID string `json:"client_event_id"`
	ResponseID    string `json:"response_id"`
	Conversation  *struct {
		ID string `json:"id"`
	} `json:"conversation"`
	Chunk    *wsChunk    `json:"chunk"`
	Output   *wsOutput   `json:"output"`
	Response *wsResponse `json:"response"`
	Error    *wsErrorObj `json:"error"`
}

// wsChunk is one response chunk. Exactly one member is usually set.
type wsChunk struct {
	Text *struct {
		Text    string `json:"text"`
		Channel string `json:"channel"`
	} `json:"text"`
	ToolUsageCard  json.RawMessage `json:"tool_usage_card"`
	ToolResult     json.RawMessage `json:"tool_result"`
	RenderCitation *struct {
		ID    string `json:"id"`
		URL   string `json:"url"`
		Title string `json:"title"`
	} `json:"render_citation"`
}

type wsOutput struct {
	StreamError    *wsErrorObj `json:"stream_error"`
	CardAttachment *struct {
		JSONData  string `json:"json_data"`
		JSONData2 string `json:"jsonData"`
	} `json:"card_attachment"`
}

type wsResponse struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	ParentResponseID string `json:"parent_response_id"`
	Model            string `json:"model"`
}

// wsErrorObj is an error event or stream error: the REST error object, or
// the err_code and err_msg strings that the web app's other sockets use.
type wsErrorObj struct {
	errorBody
}

func (e *wsErrorObj) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &e.errorBody); err != nil {
		return err
	}
	var alt struct {
		ErrCode string `json:"err_code"`
		ErrMsg  string `json:"err_msg"`
	}
	if json.Unmarshal(b, &alt) != nil {
		return nil
	}
	if e.Message == "" {
		e.Message = alt.ErrMsg
	}
	if e.Code == 0 && e.Marker == "" {
		switch {
		case alt.ErrCode == "rate_limit_exceeded":
			e.Code = codeResourceExhausted
		case alt.ErrCode != "":
			e.Marker = alt.ErrCode
		}
	}
	return nil
}

// parseWSMessage decodes one text frame of the gateway. Messages of an
// unknown type decode to a wsMessage with no frames, so a new event kind
// does not break the stream.
func parseWSMessage(data []byte) (wsMessage, error) {
	var env wsEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return wsMessage{}, fmt.Errorf("decode gateway message: %w", err)
	}
	var p wsPayload
	body := env.Event
	if len(body) == 0 || isNull(body) {
		body = data
	} else if bytes.TrimSpace(body)[0] != '{' {
		return wsMessage{}, fmt.Errorf("gateway message event is not an object")
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return wsMessage{}, fmt.Errorf("decode gateway event: %w", err)
	}

	m := wsMessage{typ: env.Type, sessionID: env.SessionID, clientEventID: p.ClientEventID}
	if m.typ == "" {
		m.typ = p.Type
	}
	if m.sessionID == "" {
		m.sessionID = p.SessionID
	}
	switch m.typ {
	case wsAttached:
		if p.Conversation != nil && p.Conversation.ID != "" {
			m.conversationID = p.Conversation.ID
			m.frames = []frame{{Conversation: &conversationFrame{ConversationID: p.Conversation.ID}}}
		}
	case wsResponseChunk:
		if p.Chunk != nil {
			m.frames = withResponseID(chunkFrames(p.Chunk), p.ResponseID)
		}
	case wsGrokOutput:
		if p.Output != nil {
			m.frames = withResponseID(outputFrames(p.Output), p.ResponseID)
		}
	case wsResponseDone:
		m.frames = doneFrames(p.Response)
	case wsError:
		eb := errorBody{Message: "gateway error"}
		if p.Error != nil {
			eb = p.Error.errorBody
		}
		m.frames = []frame{{Error: &eb}}
	}
	return m, nil
}

// withResponseID stamps the answer's id, which answer messages carry as
// response_id, on their response frames, as REST frames carry it.
func withResponseID(frames []frame, id string) []frame {
	for _, f := range frames {
		if f.Response != nil && id != "" {
			f.Response.ResponseID = id
		}
	}
	return frames
}

// chunkFrames maps a response chunk. Text on an analysis or reasoning
// channel is thinking. Tool cards and tool results are not answer text, so
// they yield nothing. A citation yields its card and the inline element
// that points at it, as the REST stream carries them.
func chunkFrames(c *wsChunk) []frame {
	switch {
	case c.Text != nil:
		tok := c.Text.Text
		r := &responseFrame{Token: &tok, MessageTag: "final"}
		ch := strings.ToUpper(c.Text.Channel)
		if strings.Contains(ch, "ANALYSIS") || strings.Contains(ch, "REASONING") {
			r.IsThinking, r.MessageTag = true, "summary"
		}
		return []frame{{Response: r}}
	case c.RenderCitation != nil && c.RenderCitation.ID != "":
		cit := c.RenderCitation
		data, _ := json.Marshal(map[string]string{"id": cit.ID, "url": cit.URL, "title": cit.Title})
		tag := fmt.Sprintf(`<grok:render card_id=%q card_type="citation" type="render_inline_citation"></grok:render>`, cit.ID)
		return []frame{
			{Response: &responseFrame{CardAttachment: &cardAttachment{JSONData: string(data)}}},
			{Response: &responseFrame{Token: &tag, MessageTag: "final"}},
		}
	}
	return nil
}

func outputFrames(o *wsOutput) []frame {
	var out []frame
	if o.StreamError != nil {
		eb := o.StreamError.errorBody
		out = append(out, frame{Error: &eb})
	}
	if ca := o.CardAttachment; ca != nil {
		data := ca.JSONData
		if data == "" {
			data = ca.JSONData2
		}
		out = append(out, frame{Response: &responseFrame{CardAttachment: &cardAttachment{JSONData: data}}})
	}
	return out
}

// doneFrames maps response.done. A completed response ends the answer as
// the REST modelResponse frame does, and any other status is a stream error.
func doneFrames(r *wsResponse) []frame {
	if r == nil {
		r = &wsResponse{}
	}
	if r.Status != "" && r.Status != "completed" {
		return []frame{{Error: &errorBody{Message: fmt.Sprintf("response ended with status %q", r.Status)}}}
	}
	return []frame{{Response: &responseFrame{
		ResponseID: r.ID,
		ModelResponse: &responseObject{
			ResponseID:       r.ID,
			ParentResponseID: r.ParentResponseID,
			Model:            r.Model,
		},
	}}}
}
