package xai

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

var _ upstream.ImageClient = (*Client)(nil)

// maxImageBodyBytes bounds an image generation response, which carries
// every image as base64.
const maxImageBodyBytes = 64 << 20

// Images posts to /images/generations and returns the images as bytes,
// because it requests response_format b64_json. An item that carries only
// a URL is returned with URL set.
func (c *Client) Images(ctx context.Context, cred upstream.Credential, req upstream.ImageRequest) ([]upstream.ImageRef, error) {
	body, err := json.Marshal(map[string]any{
		"model": req.Model, "prompt": req.Prompt, "n": max(req.N, 1), "response_format": "b64_json",
	})
	if err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeRejectedRequest, Message: "encode image request", Err: err}
	}
	resp, err := c.send(ctx, cred, http.MethodPost, "/images/generations", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	var out struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
			URL     string `json:"url"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxImageBodyBytes)).Decode(&out); err != nil {
		return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: resp.StatusCode,
			Message: "the image response is not valid JSON", Err: err}
	}
	refs := make([]upstream.ImageRef, 0, len(out.Data))
	for _, item := range out.Data {
		if item.B64JSON == "" {
			if item.URL != "" {
				refs = append(refs, upstream.ImageRef{URL: item.URL})
			}
			continue
		}
		data, err := base64.StdEncoding.DecodeString(item.B64JSON)
		if err != nil {
			return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: resp.StatusCode,
				Message: "an image is not valid base64", Err: err}
		}
		refs = append(refs, upstream.ImageRef{Data: data, MediaType: http.DetectContentType(data)})
	}
	if len(refs) == 0 {
		return nil, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: resp.StatusCode, Message: "the image response has no images"}
	}
	return refs, nil
}
