package xai

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
)

// imageRequest is the body of POST /v1/images/generations.
type imageRequest struct {
	Model          string `json:"model"`
	Prompt         string `json:"prompt"`
	N              *int   `json:"n"`
	ResponseFormat string `json:"response_format"`
}

// maxImages is the largest n the API accepts.
const maxImages = 10

// imageSide is the width and height of generated images, in pixels.
const imageSide = 64

// handleImages serves POST /v1/images/generations with PNG images whose
// colour derives from the prompt and the image's index.
func (s *Server) handleImages(w http.ResponseWriter, r *http.Request, k string) {
	s.countImage(k)
	if f, ok := s.takeFault(k); ok && writeFault(w, f) {
		return
	}
	var req imageRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "The request body is not valid JSON.")
		return
	}
	if req.Model == "" {
		req.Model = "grok-2-image"
	}
	n := 1
	if req.N != nil {
		n = *req.N
	}
	m, known := findModel(req.Model)
	switch {
	case !known || !m.Image:
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("The model %s does not exist or cannot generate images.", req.Model))
		return
	case req.Prompt == "":
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "prompt is required.")
		return
	case n < 1 || n > maxImages:
		writeError(w, http.StatusBadRequest, codeInvalidArgument, fmt.Sprintf("n must be between 1 and %d.", maxImages))
		return
	case req.ResponseFormat != "" && req.ResponseFormat != "url" && req.ResponseFormat != "b64_json":
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "response_format must be url or b64_json.")
		return
	}

	data := make([]map[string]string, 0, n)
	for i := range n {
		png := renderPNG(req.Prompt, i)
		item := map[string]string{"revised_prompt": req.Prompt}
		if req.ResponseFormat == "b64_json" {
			item["b64_json"] = base64.StdEncoding.EncodeToString(png)
		} else {
			name := newID() + ".png"
			s.mu.Lock()
			s.images[name] = png
			s.mu.Unlock()
			item["url"] = "http://" + r.Host + "/images/" + name
		}
		data = append(data, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"created": s.now().Unix(), "data": data})
}

func (s *Server) countImage(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.keys[k]; ok {
		st.images++
	}
}

// handleImageFile serves GET /images/{name}, the files that url responses
// name. Like the public image host, it needs no key.
func (s *Server) handleImageFile(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b, ok := s.images[r.PathValue("name")]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, "No such image.")
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(b)
}

// renderPNG draws a square of one colour chosen by prompt and index.
func renderPNG(prompt string, index int) []byte {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d:%s", index, prompt)))
	img := image.NewRGBA(image.Rect(0, 0, imageSide, imageSide))
	c := color.RGBA{R: sum[0], G: sum[1], B: sum[2], A: 255}
	for y := range imageSide {
		for x := range imageSide {
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}
