// Package mqttclient connects the paho MQTT client the way every role of the
// service needs it: automatic reconnect with backoff, subscriptions restored
// on every reconnect, and a truthful connected flag.
package mqttclient

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Options configures a client.
type Options struct {
	URL            string
	ClientID       string
	Username       string
	Password       string
	ConnectTimeout time.Duration
	// ManualAck withholds the QoS 1 acknowledgement until the handler calls
	// Message.Ack: the broker redelivers what was never acknowledged.
	ManualAck bool
}

// Client is a connected (or reconnecting) MQTT client.
type Client struct {
	c    paho.Client
	log  *slog.Logger
	mu   sync.Mutex
	subs map[string]sub
}

type sub struct {
	qos byte
	h   paho.MessageHandler
}

// Connect dials the broker and waits up to ConnectTimeout for the first
// connection. When the broker is not there yet, the client keeps retrying in
// the background and Connect returns the client with an error the caller may
// log; IsConnected tells the truth either way.
func Connect(ctx context.Context, o Options, log *slog.Logger) (*Client, error) {
	cl := &Client{log: log, subs: map[string]sub{}}
	id := o.ClientID
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("poi-%s-%d-%d", host, os.Getpid(), time.Now().UnixNano()%1e6)
	}
	po := paho.NewClientOptions().
		AddBroker(o.URL).
		SetClientID(id).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(15 * time.Second).
		SetConnectTimeout(o.ConnectTimeout).
		SetKeepAlive(10 * time.Second).
		SetCleanSession(true).
		// Handlers run in arrival order (per-camera order matters to the
		// tracker); ours only hand messages to a queue, and when the queue
		// is full the wait pushes back on the broker instead of dropping.
		SetOrderMatters(true).
		SetAutoAckDisabled(o.ManualAck).
		SetOnConnectHandler(cl.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			log.Warn("mqtt connection lost", "error", err)
		})
	cl.c = paho.NewClient(po)
	tok := cl.c.Connect()
	wait := time.NewTimer(o.ConnectTimeout)
	defer wait.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return cl, fmt.Errorf("mqtt connect %s: %w", o.URL, err)
		}
	case <-wait.C:
		return cl, fmt.Errorf("mqtt connect %s: not connected after %s, retrying in background", o.URL, o.ConnectTimeout)
	case <-ctx.Done():
		return cl, fmt.Errorf("mqtt connect %s: %w", o.URL, ctx.Err())
	}
	return cl, nil
}

// onConnect restores subscriptions: with a clean session the broker forgets
// them on every disconnect.
func (cl *Client) onConnect(c paho.Client) {
	cl.log.Info("mqtt connected")
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for topic, s := range cl.subs {
		if t := c.Subscribe(topic, s.qos, s.h); t.WaitTimeout(5*time.Second) && t.Error() != nil {
			cl.log.Error("mqtt resubscribe", "topic", topic, "error", t.Error())
		}
	}
}

// Subscribe registers h for topic now (if connected) and after every
// reconnect.
func (cl *Client) Subscribe(ctx context.Context, topic string, qos byte, h paho.MessageHandler) error {
	cl.mu.Lock()
	cl.subs[topic] = sub{qos: qos, h: h}
	cl.mu.Unlock()
	if !cl.c.IsConnectionOpen() {
		return nil // onConnect will subscribe
	}
	t := cl.c.Subscribe(topic, qos, h)
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("mqtt subscribe %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt subscribe %s: %w", topic, ctx.Err())
	}
}

// Unsubscribe stops delivery for the given topics (used first on shutdown,
// so no new input arrives while in-flight work drains).
func (cl *Client) Unsubscribe(topics ...string) {
	cl.mu.Lock()
	for _, t := range topics {
		delete(cl.subs, t)
	}
	cl.mu.Unlock()
	if cl.c.IsConnectionOpen() {
		cl.c.Unsubscribe(topics...).WaitTimeout(2 * time.Second)
	}
}

// Publish sends payload and waits for the broker's acknowledgement (QoS 1)
// or ctx.
func (cl *Client) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	t := cl.c.Publish(topic, qos, retained, payload)
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("mqtt publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt publish %s: %w", topic, ctx.Err())
	}
}

// IsConnected reports whether the connection is up right now.
func (cl *Client) IsConnected() bool { return cl.c.IsConnectionOpen() }

// Close disconnects, giving in-flight messages up to quiesce to finish.
func (cl *Client) Close(quiesce time.Duration) {
	cl.c.Disconnect(uint(quiesce.Milliseconds()))
}

// PublishAsync sends payload without waiting: the token completes when the
// broker acknowledges it. A load generator keeps many in flight.
func (cl *Client) PublishAsync(topic string, qos byte, payload []byte) paho.Token {
	return cl.c.Publish(topic, qos, false, payload)
}
