package embedded_test

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"poi/internal/embedded"
	"poi/internal/testenv"
)

// dial connects a plain paho client (no retries, so a refusal is the
// connect's error).
func dial(t *testing.T, addr, user, password string) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(t.Name() + "-" + user).
		SetUsername(user).SetPassword(password).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect did not complete")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func TestBrokerBeyondLoopbackNeedsAccounts(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if m, err := embedded.StartMQTT("0.0.0.0:0", embedded.MQTTOptions{}, log); err == nil {
		_ = m.Shutdown(t.Context())
		t.Fatal("an embedded broker on 0.0.0.0 started with no accounts")
	}
	hash, err := embedded.HashPassword("door-secret")
	if err != nil {
		t.Fatal(err)
	}
	m, err := embedded.StartMQTT("0.0.0.0:0", embedded.MQTTOptions{Accounts: []embedded.Account{
		{Username: "poi", Password: "service-secret", Topics: []string{"#"}},
		{Username: "door", PasswordHash: hash, Cameras: []string{"cam-door"}},
		{Username: "aisle", Password: "aisle-secret", Cameras: []string{"cam-aisle"}},
	}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(t.Context())
	_, port, _ := net.SplitHostPort(m.Addr())
	addr := net.JoinHostPort("127.0.0.1", port)

	for _, c := range []struct{ user, password string }{{"", ""}, {"door", "wrong"}, {"nobody", "door-secret"}, {"door", ""}} {
		if _, err := dial(t, addr, c.user, c.password); err == nil {
			t.Errorf("user %q with password %q was let in", c.user, c.password)
		}
	}

	svc, err := dial(t, addr, "poi", "service-secret")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string][]string{}
	tok := svc.Subscribe("poi/frames/+", 1, func(_ paho.Client, msg paho.Message) {
		mu.Lock()
		got[msg.Topic()] = append(got[msg.Topic()], string(msg.Payload()))
		mu.Unlock()
	})
	if tok.Wait(); tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// The door camera tries the aisle camera's topics: mochi answers a
	// forbidden QoS 1 publish of an MQTT 3.1.1 client by disconnecting it.
	for _, topic := range []string{"poi/frames/cam-aisle", "scenescape/data/camera/cam-aisle"} {
		door, err := dial(t, addr, "door", "door-secret")
		if err != nil {
			t.Fatalf("the door camera with its password: %v", err)
		}
		tok := door.Publish(topic, 1, false, "from door")
		if tok.Wait(); tok.Error() == nil {
			t.Errorf("the broker acknowledged the door camera's publish to %s", topic)
		}
	}
	// Then its own frame. The forged publishes were decided before their
	// connections closed, so once this one has arrived they would have too.
	door, err := dial(t, addr, "door", "door-secret")
	if err != nil {
		t.Fatal(err)
	}
	if tok := door.Publish("poi/frames/cam-door", 1, false, "from door"); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testenv.Eventually(t, 10*time.Second, "the door camera's own frame", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["poi/frames/cam-door"]) == 1
	})
	mu.Lock()
	if len(got["poi/frames/cam-aisle"]) != 0 {
		t.Errorf("the door camera published to the aisle camera's topic: %v", got)
	}
	mu.Unlock()

	// A camera reads nothing: not the other camera's frames, not alerts.
	sub := door.Subscribe("poi/frames/+", 1, func(paho.Client, paho.Message) {})
	sub.Wait()
	if res := sub.(*paho.SubscribeToken).Result(); res["poi/frames/+"] != 0x80 {
		t.Errorf("a camera's subscription to poi/frames/+ answered %#x, want 0x80 (refused)", res["poi/frames/+"])
	}
}

func TestPasswordHashes(t *testing.T) {
	h, err := embedded.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "s3cret") || !strings.HasPrefix(h, "pbkdf2-sha256$") {
		t.Fatalf("hash %q", h)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := embedded.StartMQTT("127.0.0.1:0", embedded.MQTTOptions{Accounts: []embedded.Account{{Username: "u", PasswordHash: h, Topics: []string{"#"}}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(t.Context())
	if _, err := dial(t, m.Addr(), "u", "s3cret"); err != nil {
		t.Fatalf("the password of the hash refused: %v", err)
	}
	if _, err := dial(t, m.Addr(), "u", "s3cret "); err == nil {
		t.Fatal("another password accepted")
	}
	for _, bad := range []string{"s3cret", "pbkdf2-sha256$x$AA$AA", "md5$1$AA$AA", "pbkdf2-sha256$10$!!$AA"} {
		if m, err := embedded.StartMQTT("127.0.0.1:0", embedded.MQTTOptions{Accounts: []embedded.Account{{Username: "u", PasswordHash: bad, Topics: []string{"#"}}}}, log); err == nil {
			_ = m.Shutdown(t.Context())
			t.Errorf("password_hash %q accepted", bad)
		}
	}
}
