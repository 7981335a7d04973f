package upstream

import "context"

// ImageRequest is a request to a provider's image generation API.
type ImageRequest struct {
	Model  string // upstream model id
	Prompt string
	N      int // images wanted, at least 1
}

// ImageClient is implemented by clients whose provider has an image
// generation API. Providers without one (Grok web) draw images inside a
// chat, as EventImage events.
type ImageClient interface {
	// Images returns up to req.N images, each with Data set, or with URL
	// set when the provider only links to them. An error is an *Error.
	Images(ctx context.Context, c Credential, req ImageRequest) ([]ImageRef, error)
}
