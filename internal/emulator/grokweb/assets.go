package grokweb

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// asset is a file served under the assets path. owner is the user id in
// its path; only that account's cookie may download it.
type asset struct {
	owner       string
	contentType string
	data        []byte
}

// generatedImage is one image a chat generates. Its partial and final
// paths are relative, as grok.com frames carry them.
type generatedImage struct {
	id        string
	partPath  string
	finalPath string
}

// maxImages bounds imageGenerationCount.
const maxImages = 4

// wantsImages reports whether a chat generates images: always for imagine-*
// models, and for other chats that enable image generation and whose last
// line mentions drawing or an image.
func wantsImages(req chatRequest) bool {
	if strings.HasPrefix(req.ModelName, "imagine-") {
		return true
	}
	if !req.EnableImageGeneration {
		return false
	}
	line := strings.ToLower(lastLine(req.Message))
	return strings.Contains(line, "draw") || strings.Contains(line, "image")
}

func imageCount(req chatRequest) int {
	return min(max(req.ImageGenerationCount, 1), maxImages)
}

// generateImagesLocked creates n images owned by userID and registers
// their partial and final files as assets.
func (s *Server) generateImagesLocked(userID string, n int) []generatedImage {
	images := make([]generatedImage, 0, n)
	for range n {
		id := uuid.NewString()
		img := generatedImage{
			id:        id,
			partPath:  "users/" + userID + "/generated/" + id + "-part-0/image.jpg",
			finalPath: "users/" + userID + "/generated/" + id + "/image.jpg",
		}
		data := placeholderJPEG()
		s.assets[img.partPath] = asset{owner: userID, contentType: "image/jpeg", data: data}
		s.assets[img.finalPath] = asset{owner: userID, contentType: "image/jpeg", data: data}
		images = append(images, img)
	}
	return images
}

// placeholderJPEG is the content of every generated image: a small
// solid-colour JPEG.
var placeholderJPEG = sync.OnceValue(func() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for x := range 16 {
		for y := range 16 {
			img.Set(x, y, color.RGBA{R: 200, G: 80, B: 40, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		panic(fmt.Sprintf("grokweb: encode placeholder image: %v", err))
	}
	return buf.Bytes()
})

// cardJSON returns the jsonData of an image card at a given progress: no
// image_chunk at 0, the partial URL below 100, the final URL at 100.
func (img generatedImage) cardJSON(progress int) string {
	card := map[string]any{
		"id":          img.id,
		"type":        "render_file",
		"cardType":    "generated_image_card",
		"image_chunk": nil,
	}
	if progress > 0 {
		path := img.partPath
		if progress == 100 {
			path = img.finalPath
		}
		card["image_chunk"] = map[string]any{
			"imageUuid": img.id,
			"imageUrl":  path,
			"progress":  progress,
			"moderated": false,
		}
	}
	data, _ := json.Marshal(card)
	return string(data)
}

// renderTag is the token that places the image in the answer text.
func (img generatedImage) renderTag() string {
	return fmt.Sprintf(`<grok:render card_id=%q card_type="generated_image_card" type="render_file">`+
		`<argument name="file_path">/home/workdir/artifacts/imagine_images/%s.jpg</argument></grok:render>`,
		img.id, img.id)
}

// imagineModel reports whether the chat uses an imagine-* model, whose
// images stream as streamingImageGenerationResponse frames instead of cards.
func (ex *exchange) imagineModel() bool {
	return strings.HasPrefix(ex.req.ModelName, "imagine-")
}

type imageFrame struct {
	fields map[string]any
	token  bool
}

// imageFrames returns the image frames of ex in one of the two documented
// forms, each image going from 50 to 100 percent.
func (ex *exchange) imageFrames() []imageFrame {
	modelID := ex.modelTurn.ResponseID
	var out []imageFrame
	for i, img := range ex.images {
		if ex.imagineModel() {
			for seq, progress := range []int{50, 100} {
				path := img.partPath
				if progress == 100 {
					path = img.finalPath
				}
				out = append(out, imageFrame{fields: map[string]any{
					"streamingImageGenerationResponse": map[string]any{
						"imageId":    img.id,
						"imageUrl":   path,
						"seq":        seq,
						"progress":   progress,
						"moderated":  false,
						"imageIndex": i,
						"assetId":    img.id,
					},
					"responseId": modelID,
				}})
			}
			continue
		}
		card := func(progress int) imageFrame {
			return imageFrame{fields: map[string]any{
				"cardAttachment": map[string]any{"jsonData": img.cardJSON(progress)},
				"messageTag":     "final",
				"responseId":     modelID,
			}}
		}
		out = append(out, card(0), imageFrame{token: true, fields: map[string]any{
			"token":      img.renderTag(),
			"isThinking": false,
			"isSoftStop": false,
			"messageTag": "final",
			"responseId": modelID,
		}}, card(50), card(100))
	}
	return out
}

// handleAsset serves GET /assets/{path...} and GET /users/{path...}: an
// image or upload of the account whose cookie comes with the request. A
// missing or unknown cookie gets 403, as assets.grok.com does.
func (s *Server) handleAsset(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/assets/")
	path = strings.TrimPrefix(path, "/")

	s.mu.Lock()
	acct := s.lookupLocked(r)
	a, ok := s.assets[path]
	s.mu.Unlock()
	if acct == nil {
		writeError(w, http.StatusForbidden, codePermissionDenied, "Forbidden")
		return
	}
	if !ok || a.owner != acct.UserID {
		writeError(w, http.StatusNotFound, codeNotFound, "Not found")
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Write(a.data)
}

// uploadRequest is the body of POST /rest/app-chat/upload-file.
type uploadRequest struct {
	FileName     string `json:"fileName"`
	FileMimeType string `json:"fileMimeType"`
	Content      string `json:"content"` // base64
}

// handleUpload serves the JSON base64 upload.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	var req uploadRequest
	if !decodeBody(w, r, &req) {
		return
	}
	data, err := base64.StdEncoding.DecodeString(req.Content)
	if err != nil || req.FileName == "" {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "fileName and base64 content are required")
		return
	}
	id, uri := s.storeFile(acct.UserID, req.FileMimeType, data)
	writeJSON(w, http.StatusOK, map[string]any{"fileMetadataId": id, "fileUri": uri})
}

// handleUploadDirect serves the multipart upload with a part named file.
func (s *Server) handleUploadDirect(w http.ResponseWriter, r *http.Request) {
	acct, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	file, header, err := r.FormFile("file")
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "multipart part \"file\" is required")
		return
	}
	defer file.Close()
	data, err := io.ReadAll(file)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "read upload: "+err.Error())
		return
	}
	id, uri := s.storeFile(acct.UserID, header.Header.Get("Content-Type"), data)
	writeJSON(w, http.StatusOK, map[string]any{
		"uploadId":      uuid.NewString(),
		"fileMetadata":  map[string]any{"fileMetadataId": id, "fileUri": uri},
		"terminalError": nil,
	})
}

// storeFile keeps an upload as an asset and returns its id and relative URI.
func (s *Server) storeFile(userID, contentType string, data []byte) (id, uri string) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	id = uuid.NewString()
	uri = "users/" + userID + "/" + id + "/content"
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assets[uri] = asset{owner: userID, contentType: contentType, data: data}
	return id, uri
}

// unknownFile returns the first id in ids that is not an upload of userID,
// and false; or "" and true when all are known.
func (s *Server) unknownFile(userID string, ids []string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.assets["users/"+userID+"/"+id+"/content"]; !ok {
			return id, false
		}
	}
	return "", true
}

// handleSession serves GET /api/auth/session, the login check. A dead
// cookie gets {"status":"unauthenticated"}, and an account with a
// never-ending blocked fault gets {"status":"blocked"}.
// NOTE: both rejections use status 200 because the public sources show only
// the status field. Clients should read that field, not the HTTP status.
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.lookupLocked(r)
	var acct Account
	if a != nil {
		acct = a.Account
	}
	s.mu.Unlock()
	if a == nil {
		writeJSON(w, http.StatusOK, map[string]any{"status": "unauthenticated"})
		return
	}
	switch s.permanentFault(acct.SSO) {
	case FaultUnauthorized:
		writeJSON(w, http.StatusOK, map[string]any{"status": "unauthenticated"})
		return
	case FaultBlocked:
		writeJSON(w, http.StatusOK, map[string]any{"status": "blocked"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "authenticated",
		"session": map[string]any{
			"userId":         acct.UserID,
			"email":          acct.Email,
			"organizationId": "",
		},
	})
}
