// Package scenescape is a small client of SceneScape's REST API: the camera
// list, with token authentication renewed on 401.
package scenescape

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"poi/internal/config"
)

// Error is a failure to get an answer from SceneScape (down, slow, or
// refusing): the API reports it as a bad gateway.
type Error struct{ Err error }

func (e *Error) Error() string { return "scenescape: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Client talks to one SceneScape instance.
type Client struct {
	cfg  config.SceneScape
	http *http.Client

	mu    sync.Mutex
	token string
}

// New returns a client; every call is bounded by cfg.Timeout.
func New(cfg config.SceneScape) *Client {
	return &Client{cfg: cfg, http: &http.Client{Timeout: cfg.Timeout}, token: cfg.Token}
}

// Cameras returns SceneScape's cameras.
func (c *Client) Cameras(ctx context.Context) ([]config.Camera, error) {
	var body struct {
		Results []struct {
			UID  string `json:"uid"`
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"results"`
	}
	if err := c.get(ctx, "/api/v1/cameras", &body); err != nil {
		return nil, err
	}
	out := make([]config.Camera, 0, len(body.Results))
	for _, r := range body.Results {
		id := r.UID
		if id == "" {
			id = r.ID
		}
		out = append(out, config.Camera{ID: id, Name: r.Name})
	}
	return out, nil
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.cfg.URL, "/")+path, nil)
		if err != nil {
			return &Error{err}
		}
		c.mu.Lock()
		if c.token != "" {
			req.Header.Set("Authorization", "Token "+c.token)
		}
		c.mu.Unlock()
		resp, err := c.http.Do(req)
		if err != nil {
			return &Error{err}
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if err != nil {
			return &Error{err}
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.cfg.Username != "" {
			if err := c.login(ctx); err != nil {
				return err
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return &Error{fmt.Errorf("GET %s: %s", path, resp.Status)}
		}
		if err := json.Unmarshal(b, v); err != nil {
			return &Error{fmt.Errorf("GET %s: %w", path, err)}
		}
		return nil
	}
}

// login obtains a new token (SceneScape's /api/v1/auth).
func (c *Client) login(ctx context.Context) error {
	form, _ := json.Marshal(map[string]string{"username": c.cfg.Username, "password": c.cfg.Password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.URL, "/")+"/api/v1/auth", bytes.NewReader(form))
	if err != nil {
		return &Error{err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return &Error{err}
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK {
		return &Error{fmt.Errorf("login: %s", resp.Status)}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil || body.Token == "" {
		return &Error{fmt.Errorf("login: no token in the answer")}
	}
	c.mu.Lock()
	c.token = body.Token
	c.mu.Unlock()
	return nil
}
