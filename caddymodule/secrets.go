package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
)

// checkSecrets refuses a secret that is empty once its placeholders are
// resolved (an unset environment variable); cookie.NewSigner checks the
// rest when the signer is made.
func checkSecrets(secrets []string) error {
	repl := caddy.NewReplacer()
	for i, s := range secrets {
		if repl.ReplaceKnown(s, "") == "" {
			return fmt.Errorf("secret %d is empty (is its environment variable set?)", i+1)
		}
	}
	return nil
}

// provisionSecrets makes the cookie signer from the secrets (check has
// refused empty ones), or from a key kept in Caddy's storage.
func (h *Handler) provisionSecrets(ctx caddy.Context) error {
	var keys [][]byte
	repl := caddy.NewReplacer()
	for _, s := range h.Secrets {
		keys = append(keys, []byte(repl.ReplaceKnown(s, "")))
	}
	if len(keys) == 0 {
		key, created, err := loadOrCreateSecret(ctx)
		if err != nil {
			return fmt.Errorf("no secret configured, and none could be kept in Caddy's storage: %v", err)
		}
		keys = append(keys, key)
		h.logger.Info("no secret configured: signing cookies with a random key kept in Caddy's storage; instances that share that storage share the key",
			zap.String("storage_key", storageSecretKey), zap.Bool("generated", created))
	}
	signer, err := cookie.NewSigner(keys...)
	if err != nil {
		return fmt.Errorf("session secret: %v", err)
	}
	h.signer = signer
	return nil
}

// loadOrCreateSecret returns the signing key kept in Caddy's storage,
// generating it under the storage lock the first time so that instances
// starting together agree on one key.
func loadOrCreateSecret(ctx caddy.Context) ([]byte, bool, error) {
	st := ctx.Storage()
	load := func() ([]byte, error) {
		b, err := st.Load(ctx, storageSecretKey)
		if err == nil && len(b) < cookie.MinSecretLen {
			return nil, fmt.Errorf("stored secret %s is too short", storageSecretKey)
		}
		return b, err
	}
	if b, err := load(); err == nil {
		return b, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := st.Lock(ctx, storageSecretKey); err != nil {
		return nil, false, err
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), storageSecretKey) }()
	if b, err := load(); err == nil {
		return b, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	key := []byte(newSecret())
	if err := st.Store(ctx, storageSecretKey, key); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// newSecret returns 32 random bytes, hex-encoded: the form the handler
// generates for itself, `caddy session gen-secret` prints and the secret
// option accepts.
func newSecret() string {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(raw[:])
}
