// Package mqttclient connects the paho MQTT client the way every role of the
// service needs it: automatic reconnect with backoff, subscriptions restored
// on every reconnect, and a truthful connected flag.
package mqttclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"poi/internal/config"
)

// Options configures a client.
type Options struct {
	URL            string
	ClientID       string
	Username       string
	Password       string
	ConnectTimeout time.Duration
	// TLS is used for ssl://, tls:// and wss:// brokers; nil: Go's defaults.
	TLS *tls.Config
	// ManualAck withholds the QoS 1 acknowledgement until the handler calls
	// Message.Ack: the broker redelivers what was never acknowledged.
	ManualAck bool
	// Persistent asks the broker to keep the session (subscriptions and
	// unacknowledged QoS 1 messages) across disconnects: clean session off.
	// It needs a ClientID that stays the same across restarts.
	Persistent bool
}

// Client is a connected (or reconnecting) MQTT client.
type Client struct {
	c    paho.Client
	o    Options
	log  *slog.Logger
	mu   sync.Mutex
	subs map[string]sub
	// subscribed is closed once the first connection's subscriptions are
	// in place: paho runs the connect handler after the connect token
	// completes, and a process that reported ready before it would miss
	// what is published in between.
	subscribed chan struct{}
	once       sync.Once
}

type sub struct {
	qos byte
	h   paho.MessageHandler
}

// New configures a client without connecting it, so that handlers can be
// registered (Subscribe) before the first connection: a persistent session
// delivers its queued messages the moment the connection is up, before any
// subscription is renewed, and a message with no handler would stay
// unacknowledged until the next reconnect.
func New(o Options, log *slog.Logger) (*Client, error) {
	if o.Persistent && o.ClientID == "" {
		return nil, errors.New("mqtt: a persistent session needs a fixed client id")
	}
	cl := &Client{o: o, log: log, subs: map[string]sub{}, subscribed: make(chan struct{})}
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
		SetCleanSession(!o.Persistent).
		// Handlers run in arrival order on paho's one goroutine, which also
		// reads the keepalive answers: a handler that blocks gets the
		// connection dropped. Ours only hand messages on without waiting.
		SetOrderMatters(true).
		SetAutoAckDisabled(o.ManualAck).
		SetOnConnectHandler(cl.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			log.Warn("mqtt connection lost", "error", err)
		})
	if o.TLS != nil {
		po.SetTLSConfig(o.TLS)
	}
	cl.c = paho.NewClient(po)
	return cl, nil
}

// Connect is New and then Start.
func Connect(ctx context.Context, o Options, log *slog.Logger) (*Client, error) {
	cl, err := New(o, log)
	if err != nil {
		return nil, err
	}
	return cl, cl.Start(ctx)
}

// Start dials the broker and waits up to ConnectTimeout for the first
// connection. When the broker is not there yet, the client keeps retrying in
// the background and Start returns an error the caller may log;
// IsConnected tells the truth either way.
func (cl *Client) Start(ctx context.Context) error {
	tok := cl.c.Connect()
	wait := time.NewTimer(cl.o.ConnectTimeout)
	defer wait.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("mqtt connect %s: %w", config.RedactURL(cl.o.URL), err)
		}
		select {
		case <-cl.subscribed:
		case <-wait.C:
			return fmt.Errorf("mqtt connect %s: subscriptions not in place after %s", config.RedactURL(cl.o.URL), cl.o.ConnectTimeout)
		case <-ctx.Done():
			return fmt.Errorf("mqtt connect %s: %w", config.RedactURL(cl.o.URL), ctx.Err())
		}
	case <-wait.C:
		return fmt.Errorf("mqtt connect %s: not connected after %s, retrying in background", config.RedactURL(cl.o.URL), cl.o.ConnectTimeout)
	case <-ctx.Done():
		return fmt.Errorf("mqtt connect %s: %w", config.RedactURL(cl.o.URL), ctx.Err())
	}
	return nil
}

// Reconnect drops the connection and dials again. With a persistent session
// the broker then resends every QoS 1 message not yet acknowledged, which is
// how a message the bridge had no room for is received again. down runs
// while the client is disconnected.
func (cl *Client) Reconnect(ctx context.Context, down func()) error {
	cl.c.Disconnect(250)
	down()
	return cl.Start(ctx)
}

// onConnect restores subscriptions: with a clean session the broker forgets
// them on every disconnect (renewing them on a persistent one is harmless).
func (cl *Client) onConnect(c paho.Client) {
	cl.log.Info("mqtt connected")
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for topic, s := range cl.subs {
		if t := c.Subscribe(topic, s.qos, s.h); t.WaitTimeout(5*time.Second) && t.Error() != nil {
			cl.log.Error("mqtt resubscribe", "topic", topic, "error", t.Error())
		}
	}
	cl.once.Do(func() { close(cl.subscribed) })
}

// Subscribe registers h for topic now (if connected) and after every
// reconnect.
func (cl *Client) Subscribe(ctx context.Context, topic string, qos byte, h paho.MessageHandler) error {
	cl.mu.Lock()
	cl.subs[topic] = sub{qos: qos, h: h}
	cl.mu.Unlock()
	if !cl.c.IsConnectionOpen() {
		// Routed now, subscribed by onConnect: messages a persistent
		// session delivers on connect find their handler.
		cl.c.AddRoute(topic, h)
		return nil
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
