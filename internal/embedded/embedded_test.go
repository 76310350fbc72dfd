package embedded_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"poi/internal/embedded"
	"poi/internal/testenv"
)

// mqttString is an MQTT UTF-8 string: a two-byte length, then the bytes.
func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// mqttPacket frames a control packet: the type byte, the remaining length
// (MQTT's variable-length integer), the body.
func mqttPacket(kind byte, body []byte) []byte {
	out := []byte{kind}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// TestCloseIsNotHeldByAClientThatStoppedReading: a subscriber whose socket
// is full (a process stopped, a client wedged) blocks the broker's writes
// to it; Close must still return.
func TestCloseIsNotHeldByAClientThatStoppedReading(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := embedded.StartMQTT("127.0.0.1:0", embedded.MQTTOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	// A subscriber speaking MQTT 3.1.1 by hand, so that it can stop reading.
	conn, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connect := append(mqttString("MQTT"), 4, 0x02, 0, 60) // level 4, clean session, keepalive 60 s
	connect = append(connect, mqttString("wedged")...)
	subscribe := append([]byte{0, 1}, mqttString("poi/#")...)
	subscribe = append(subscribe, 0) // QoS 0
	if _, err := conn.Write(append(mqttPacket(0x10, connect), mqttPacket(0x82, subscribe)...)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4+5) // CONNACK, SUBACK
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[4] != 0x90 {
		t.Fatalf("connect and subscribe: % x, %v", ack, err)
	}

	pub, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pubConnect := append(mqttString("MQTT"), 4, 0x02, 0, 60)
	pubConnect = append(pubConnect, mqttString("flood")...)
	if _, err := pub.Write(mqttPacket(0x10, pubConnect)); err != nil {
		t.Fatal(err)
	}
	// Far more than loopback's socket buffers hold: the broker's writer to
	// the subscriber ends up blocked in a write.
	payload := bytes.Repeat([]byte{'x'}, 1<<20)
	frame := mqttPacket(0x30, append(mqttString("poi/frames/cam"), payload...))
	for range 64 {
		_ = pub.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := pub.Write(frame); err != nil {
			break // the broker stopped reading the publisher too
		}
	}

	done := make(chan error, 1)
	go func() { done <- m.Shutdown(ctx) }()
	testenv.Eventually(t, time.Minute, "the broker closed", func() bool {
		select {
		case err := <-done:
			if err != nil && !strings.Contains(err.Error(), "closed") {
				t.Errorf("close: %v", err)
			}
			return true
		default:
			return false
		}
	})
}
