package config

import (
	"strings"
	"testing"
)

func TestRedactURLHidesPasswordsAndTokens(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://:hunter2@redis.internal:6379/0":           "redis://:xxxxx@redis.internal:6379/0",
		"rediss://poi:hunter2@redis.internal:6380/1":       "rediss://poi:xxxxx@redis.internal:6380/1",
		"nats://s3cr3tt0ken@nats-1:4222,nats://a:b@nats-2": "nats://xxxxx@nats-1:4222,nats://a:xxxxx@nats-2",
		"redis://127.0.0.1:6379/0":                         "redis://127.0.0.1:6379/0",
		"tcp://cam:pw@broker:1883":                         "tcp://cam:xxxxx@broker:1883",
		"redis://:pa ss@host%zz":                           "[unparsable URL redacted]",
	} {
		got := RedactURL(raw)
		if got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
		for _, secret := range []string{"hunter2", "s3cr3tt0ken", "pa ss"} {
			if strings.Contains(got, secret) {
				t.Errorf("RedactURL(%q) = %q still holds %q", raw, got, secret)
			}
		}
	}
}

// A bad redis.url is named in the error without its password.
func TestValidationErrorsDoNotLeakURLPasswords(t *testing.T) {
	_, err := Load("", []string{"POI_REDIS_URL=http://:hunter2@redis:6379"})
	if err == nil || !strings.Contains(err.Error(), "redis.url") {
		t.Fatalf("err = %v, want one naming redis.url", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

func TestEmbeddedBrokerBeyondLoopbackNeedsAccounts(t *testing.T) {
	if _, err := Load("", []string{"POI_MQTT_EMBEDDED_ADDR=0.0.0.0:1883"}); err == nil || !strings.Contains(err.Error(), "mqtt.accounts") {
		t.Fatalf("0.0.0.0 with no accounts: err = %v", err)
	}
	accounts := `[{"username":"poi","password":"svc","topics":["#"]},{"username":"door","password_hash":"pbkdf2-sha256$1$AA$AA","cameras":["cam-door"]}]`
	c, err := Load("", []string{"POI_MQTT_EMBEDDED_ADDR=0.0.0.0:1883", "POI_MQTT_USERNAME=poi", "POI_MQTT_PASSWORD=svc", "POI_MQTT_ACCOUNTS=" + accounts})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.MQTT.Accounts) != 2 || c.MQTT.Accounts[1].PasswordHash == "" || c.MQTT.Accounts[1].Cameras[0] != "cam-door" {
		t.Fatalf("accounts = %+v", c.MQTT.Accounts)
	}
	for name, env := range map[string][]string{
		"the service's own login not listed": {"POI_MQTT_USERNAME=other", "POI_MQTT_ACCOUNTS=" + accounts},
		"no password":                        {"POI_MQTT_USERNAME=poi", `POI_MQTT_ACCOUNTS=[{"username":"poi","topics":["#"]}]`},
		"a camera id with a wildcard":        {"POI_MQTT_USERNAME=poi", `POI_MQTT_ACCOUNTS=[{"username":"poi","password":"x","cameras":["cam/+"]}]`},
		"no topic at all":                    {"POI_MQTT_USERNAME=poi", `POI_MQTT_ACCOUNTS=[{"username":"poi","password":"x"}]`},
	} {
		if _, err := Load("", env); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTLSAndNATSCredentialsAreChecked(t *testing.T) {
	for name, env := range map[string][]string{
		"a client cert without its key":  {"POI_MQTT_TLS_CERT_FILE=/nonexistent/cert.pem"},
		"a CA file that is not there":    {"POI_NATS_TLS_CA_FILE=/nonexistent/ca.pem"},
		"a creds file that is not there": {"POI_NATS_CREDS_FILE=/nonexistent/poi.creds"},
		"creds and a username":           {"POI_NATS_CREDS_FILE=/nonexistent/poi.creds", "POI_NATS_USERNAME=poi"},
	} {
		if _, err := Load("", env); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.TLS.InsecureSkipVerify || c.NATS.TLS.InsecureSkipVerify {
		t.Fatal("insecure_skip_verify is on by default")
	}
	if tc, err := c.MQTT.TLS.Config(); tc != nil || err != nil {
		t.Fatalf("no TLS settings gave %v, %v; want Go's defaults (nil)", tc, err)
	}
}
