package site

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgfleet/pgfleet/shared/aws/provision"
	"github.com/pgfleet/pgfleet/shared/local/moto"
)

// ReplicationUser is the role replicas connect as.
const ReplicationUser = "replicator"

// ReplicationSecretParameter is the SecureString parameter holding a cluster's replication
// password: where a user keeps it, for hosts to fetch with their instance role. pgfleet never
// reads it; the site seeds it so that the setup has a real secret that no output may contain.
func ReplicationSecretParameter(cluster string) string {
	return "/pgfleet/secrets/" + cluster + "/replication-password"
}

// seedReplicationSecret generates the replication password and stores it in moto's Parameter
// Store. The value lives nowhere else: not in the state file, not in memory past this call.
func (s *Site) seedReplicationSecret(ctx context.Context) error {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("generate the replication password: %w", err)
	}
	cfg, err := moto.Config(ctx, s.MotoURL)
	if err != nil {
		return err
	}
	name := ReplicationSecretParameter(s.Cluster)
	if err := provision.PutSecret(ctx, cfg, name, base64.RawURLEncoding.EncodeToString(b)); err != nil {
		return err
	}
	s.ReplicationSecret = name
	return nil
}

// ReplicationPassword fetches the replication password from Parameter Store, as a host does.
func (s *State) ReplicationPassword(ctx context.Context) (string, error) {
	if s.ReplicationSecret == "" {
		return "", errors.New("this site has no replication secret (started by an older version)")
	}
	cfg, err := moto.Config(ctx, s.MotoURL)
	if err != nil {
		return "", err
	}
	return provision.GetSecret(ctx, cfg, s.ReplicationSecret)
}

// configureReplicationRole makes the password a working credential of the primary, the way a
// host's bootstrap would: it fetches the secret from Parameter Store, creates the replication
// role with a SCRAM verifier computed here (the server, its logs and psql's argv never see the
// password), requires scram-sha-256 for that role over TCP, and proves both that the password
// logs in and that a wrong one is refused.
func (s *Site) configureReplicationRole(ctx context.Context, h Host) error {
	inst, ok := s.PG[h.InstanceID]
	if !ok {
		return fmt.Errorf("replication role: no running PostgreSQL on %s", h.InstanceID)
	}
	password, err := s.ReplicationPassword(ctx)
	if err != nil {
		return fmt.Errorf("replication role: %w", err)
	}
	verifier, err := scramVerifier(password)
	if err != nil {
		return err
	}
	// First match wins in pg_hba.conf, so these lines go above initdb's trust lines.
	hba := filepath.Join(h.PGData, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		return fmt.Errorf("replication role: read pg_hba.conf: %w", err)
	}
	rules := fmt.Sprintf("# pgfleet local site: the replication role logs in with its password only\n"+
		"host replication %[1]s 127.0.0.1/32 scram-sha-256\nhost all %[1]s 127.0.0.1/32 scram-sha-256\n", ReplicationUser)
	if err := os.WriteFile(hba, append([]byte(rules), old...), 0o600); err != nil {
		return fmt.Errorf("replication role: write pg_hba.conf: %w", err)
	}
	conn, err := pgx.Connect(ctx, inst.DSN())
	if err != nil {
		return fmt.Errorf("replication role: connect as %s: %w", "postgres", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The verifier is base64 and '$' ':' only, so it needs no quoting beyond the literal's.
	if _, err := conn.Exec(ctx, "CREATE ROLE "+ReplicationUser+" WITH LOGIN REPLICATION PASSWORD '"+verifier+"'"); err != nil {
		return fmt.Errorf("replication role: create role %s: %w", ReplicationUser, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("replication role: reload pg_hba.conf: %w", err)
	}
	return waitPasswordEnforced(ctx, h.Port, password)
}

// waitPasswordEnforced waits (bounded) until the reloaded pg_hba.conf refuses a wrong password
// for the replication role, then checks the real one logs in as a replication role.
func waitPasswordEnforced(ctx context.Context, port int, password string) error {
	wrong := make([]byte, 12)
	if _, err := rand.Read(wrong); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	wait := 20 * time.Millisecond
	for {
		c, err := connectReplicationUser(ctx, port, base64.RawURLEncoding.EncodeToString(wrong))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "28P01" { // invalid_password
			break
		}
		if err == nil {
			_ = c.Close(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication role: a wrong password is not refused 10 s after reloading pg_hba.conf (last: %v)", err)
		}
		if err := sleepUntil(ctx, time.Now().Add(wait)); err != nil {
			return err
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
	c, err := connectReplicationUser(ctx, port, password)
	if err != nil {
		return fmt.Errorf("replication role: the password from Parameter Store does not log in: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var replication bool
	if err := c.QueryRow(ctx, "SELECT rolreplication FROM pg_roles WHERE rolname = current_user").Scan(&replication); err != nil || !replication {
		return fmt.Errorf("replication role: %s has no REPLICATION attribute (%v)", ReplicationUser, err)
	}
	return nil
}

// connectReplicationUser logs in over TCP; the password goes in the config, never in a
// connection string that an error message could echo.
func connectReplicationUser(ctx context.Context, port int, password string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable connect_timeout=5", port, ReplicationUser))
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	return pgx.ConnectConfig(ctx, cfg)
}

// scramVerifier is the SCRAM-SHA-256 verifier PostgreSQL stores for password (RFC 5802, RFC
// 7677; PostgreSQL's format SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>), with
// PostgreSQL's default 4096 iterations.
func scramVerifier(password string) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scram salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("scram salted password: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	v := fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(server))
	if strings.ContainsAny(v, `'\`) {
		return "", errors.New("scram verifier: unexpected quote") // base64 never has one
	}
	return v, nil
}
