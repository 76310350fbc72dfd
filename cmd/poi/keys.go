package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/audit"
	"poi/internal/auth"
	"poi/internal/config"
	"poi/internal/store"
	"poi/streams"
)

const keysUsage = "keys create --role viewer|operator|admin --name NAME [--expires-in D] | keys list | keys revoke NAME_OR_ID"

// keysFlags are `poi keys`'s own flags.
type keysFlags struct {
	role, name string
	expiresIn  time.Duration
}

func addKeysFlags(fs *flag.FlagSet, k *keysFlags) {
	fs.StringVar(&k.role, "role", "", "create: viewer, operator or admin")
	fs.StringVar(&k.name, "name", "", "create: the key's name (unique among keys in force)")
	fs.DurationVar(&k.expiresIn, "expires-in", 0, "create: the key stops working after this long (0: never)")
}

// runKeys manages API keys on Redis directly, as the REST API does: whoever
// runs it holds the service's configuration, so it is the way back in when
// every admin key is lost. Changes are audited like the API's; without the
// audit stream it changes nothing.
func runKeys(ctx context.Context, cfg config.Config, op string, args []string, f keysFlags, stdout, stderr io.Writer) int {
	st, err := store.Open(cfg.Redis.URL, cfg.Redis.KeyPrefix)
	if err != nil {
		fmt.Fprintf(stderr, "poi keys: redis.url: %v\n", err)
		return 2
	}
	defer st.Close()
	switch op {
	case "list":
		if len(args) != 0 {
			fmt.Fprintf(stderr, "usage: poi %s\n", keysUsage)
			return 2
		}
		return listKeys(ctx, st, stdout, stderr)
	case "create", "revoke":
	default:
		fmt.Fprintf(stderr, "poi keys: unknown operation %q\nusage: poi %s\n", op, keysUsage)
		return 2
	}
	rec, err := connectAudit(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "poi keys: the audit stream is not reachable, nothing changed (is the service running?): %v\n", err)
		return 1
	}
	defer rec.close()
	if op == "create" {
		if len(args) != 0 || f.name == "" || f.role == "" {
			fmt.Fprintf(stderr, "usage: poi %s\n", keysUsage)
			return 2
		}
		return createKey(ctx, st, rec, f, stdout, stderr)
	}
	if len(args) != 1 {
		fmt.Fprintf(stderr, "usage: poi %s\n", keysUsage)
		return 2
	}
	return revokeKey(ctx, st, rec, args[0], stdout, stderr)
}

func listKeys(ctx context.Context, st *store.Store, stdout, stderr io.Writer) int {
	recs, err := st.APIKeys(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "poi keys list: %v\n", err)
		return 1
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tSTATUS\tCREATED\tEXPIRES\tCREATED BY")
	for _, r := range recs {
		exp := "never"
		if !r.ExpiresAt.IsZero() {
			exp = r.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, r.Role, r.Status(now), r.CreatedAt.Format(time.RFC3339), exp, r.CreatedBy)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "poi keys list: %v\n", err)
		return 1
	}
	return 0
}

func createKey(ctx context.Context, st *store.Store, rec *cliAudit, f keysFlags, stdout, stderr io.Writer) int {
	role, err := auth.ParseRole(f.role)
	if err != nil {
		fmt.Fprintf(stderr, "poi keys create: --role: %v\n", err)
		return 2
	}
	now := time.Now()
	var exp time.Time
	if f.expiresIn < 0 {
		fmt.Fprintf(stderr, "poi keys create: --expires-in must not be negative\n")
		return 2
	}
	if f.expiresIn > 0 {
		exp = now.Add(f.expiresIn)
	}
	r, secret, err := auth.NewRecord(f.name, role, exp, rec.actor.Name, now)
	if err != nil {
		fmt.Fprintf(stderr, "poi keys create: %v\n", err)
		return 2
	}
	if err := st.CreateAPIKey(ctx, r); err != nil {
		if errors.Is(err, store.ErrNameTaken) {
			fmt.Fprintf(stderr, "poi keys create: a key named %q is in force: revoke it first or pick another name\n", f.name)
			return 1
		}
		fmt.Fprintf(stderr, "poi keys create: %v\n", err)
		return 1
	}
	if err := rec.record(ctx, audit.KeyCreate, map[string]any{"key_id": r.ID, "name": r.Name, "role": r.Role.String(), "expires_at": rfc3339OrEmpty(r.ExpiresAt)}); err != nil {
		fmt.Fprintf(stderr, "poi keys create: key %s created but not audited: %v\n", r.ID, err)
		return 1
	}
	// The secret goes to stdout alone (so it can be piped into a file);
	// it is shown this once.
	fmt.Fprintln(stdout, secret)
	fmt.Fprintf(stderr, "created key %s (%s, %s); it is shown once, above\n", r.ID, r.Name, r.Role)
	return 0
}

func revokeKey(ctx context.Context, st *store.Store, rec *cliAudit, which string, stdout, stderr io.Writer) int {
	id, err := st.ResolveAPIKey(ctx, which)
	if err != nil {
		fmt.Fprintf(stderr, "poi keys revoke: %v\n", err)
		return 1
	}
	changed, err := st.RevokeAPIKey(ctx, id, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "poi keys revoke: %v\n", err)
		return 1
	}
	r, err := st.APIKey(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "poi keys revoke: %v\n", err)
		return 1
	}
	if changed {
		if err := rec.record(ctx, audit.KeyRevoke, map[string]any{"key_id": r.ID, "name": r.Name, "role": r.Role.String()}); err != nil {
			fmt.Fprintf(stderr, "poi keys revoke: key %s revoked but not audited: %v\n", r.ID, err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "revoked key %s (%s)\n", r.ID, r.Name)
	return 0
}

func rfc3339OrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// cliAudit records the command line's changes in the service's trail.
type cliAudit struct {
	nc     *nats.Conn
	rec    *audit.Recorder
	actor  streams.AuditActor
	remote string
}

func (a *cliAudit) close() { a.nc.Close() }

func (a *cliAudit) record(ctx context.Context, action string, details map[string]any) error {
	return a.rec.Record(ctx, streams.AuditEvent{Action: action, Actor: a.actor, Remote: a.remote, Details: details})
}

// connectAudit reaches the service's NATS (nats.url, or the embedded
// server's address) and checks that the audit stream is there.
func connectAudit(ctx context.Context, cfg config.Config) (*cliAudit, error) {
	url := cfg.NATS.URL
	if cfg.NATS.Embedded() {
		url = "nats://" + net.JoinHostPort(cfg.NATS.EmbeddedHost, strconv.Itoa(cfg.NATS.EmbeddedPort))
	}
	nc, err := nats.Connect(url, nats.Name("poi keys"), nats.Timeout(cfg.NATS.ConnectTimeout))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.NATS.ConnectTimeout)
	defer cancel()
	if _, err := js.Stream(cctx, streams.Audit); err != nil {
		nc.Close()
		return nil, fmt.Errorf("stream %s: %w", streams.Audit, err)
	}
	name := "cli"
	if u, err := user.Current(); err == nil {
		name = "cli:" + u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return &cliAudit{nc: nc, rec: audit.NewRecorder(js), actor: streams.AuditActor{Name: name, Role: auth.Admin.String()}, remote: "cli@" + host}, nil
}
