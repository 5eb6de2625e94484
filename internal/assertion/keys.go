package assertion

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// JWK is a public key as published in the JWK Set.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// Set is a JWK Set.
type Set struct {
	Keys []JWK `json:"keys"`
}

// NewSet is the set of keys in the order given, each kid once.
func NewSet(keys ...JWK) Set {
	set := Set{Keys: make([]JWK, 0, len(keys))}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if !seen[k.Kid] {
			seen[k.Kid] = true
			set.Keys = append(set.Keys, k)
		}
	}
	return set
}

// Thumbprint is the RFC 7638 thumbprint of an Ed25519 or P-256 JWK:
// base64url of the SHA-256 of its required members in lexicographic order.
func Thumbprint(k JWK) string {
	canon := `{"crv":"` + k.Crv + `","kty":"` + k.Kty + `","x":"` + k.X + `"}`
	if k.Kty == "EC" {
		canon = `{"crv":"` + k.Crv + `","kty":"EC","x":"` + k.X + `","y":"` + k.Y + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:])
}

func publicJWK(pub ed25519.PublicKey) JWK {
	k := JWK{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(pub), Alg: AlgEdDSA, Use: "sig"}
	k.Kid = Thumbprint(k)
	return k
}

func ecJWK(pub *ecdsa.PublicKey) (JWK, error) {
	if pub.Curve != elliptic.P256() {
		return JWK{}, fmt.Errorf("an ECDSA key on %s: want P-256", pub.Curve.Params().Name)
	}
	raw, err := pub.Bytes() // 0x04 || x || y
	if err != nil {
		return JWK{}, err
	}
	k := JWK{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:]), Alg: AlgES256, Use: "sig"}
	k.Kid = Thumbprint(k)
	return k, nil
}

// ReadPEM returns value itself when it holds a PEM block (a key given
// through an environment variable), otherwise the content of the file it
// names.
func ReadPEM(value string) ([]byte, error) {
	if strings.Contains(value, "-----BEGIN ") {
		return []byte(value), nil
	}
	if value == "" {
		return nil, errors.New("empty: want a PEM file or a PEM block (is its environment variable set?)")
	}
	return os.ReadFile(value)
}

// ParsePrivateKeyPEM makes a Signer of the first private key in a PEM
// document: PKCS #8 ("PRIVATE KEY") Ed25519 or P-256, or SEC 1 ("EC
// PRIVATE KEY") P-256. Other keys (RSA, other curves) are refused.
func ParsePrivateKeyPEM(doc []byte) (*Signer, error) {
	for {
		var block *pem.Block
		block, doc = pem.Decode(doc)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY or EC PRIVATE KEY block in the PEM data")
		}
		switch block.Type {
		case "PRIVATE KEY":
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS #8 private key: %v", err)
			}
			switch k := key.(type) {
			case ed25519.PrivateKey:
				return NewEd25519(k), nil
			case *ecdsa.PrivateKey:
				return NewP256(k)
			default:
				return nil, fmt.Errorf("a %T private key: want Ed25519 or P-256", key)
			}
		case "EC PRIVATE KEY":
			key, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("EC private key: %v", err)
			}
			return NewP256(key)
		case "PUBLIC KEY":
			return nil, errors.New("a public key: want the private key (public keys go in previous)")
		}
	}
}

// ParsePublicKeyPEM returns the JWK of every public key ("PUBLIC KEY",
// PKIX) in a PEM document: Ed25519 or P-256, nothing else.
func ParsePublicKeyPEM(doc []byte) ([]JWK, error) {
	var keys []JWK
	for {
		var block *pem.Block
		block, doc = pem.Decode(doc)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("a %s block: want PUBLIC KEY blocks only", block.Type)
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %v", err)
		}
		switch k := key.(type) {
		case ed25519.PublicKey:
			keys = append(keys, publicJWK(k))
		case *ecdsa.PublicKey:
			jwk, err := ecJWK(k)
			if err != nil {
				return nil, err
			}
			keys = append(keys, jwk)
		default:
			return nil, fmt.Errorf("a %T public key: want Ed25519 or P-256", key)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no PUBLIC KEY block in the PEM data")
	}
	return keys, nil
}

// PrivateKeyPEM is the Signer's key as PKCS #8 PEM, for Caddy's storage.
func (s *Signer) PrivateKeyPEM() ([]byte, error) {
	var key any = s.ed
	if s.ec != nil {
		key = s.ec
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicKeyPEM is the Signer's public key as PKIX PEM: what goes in
// another instance's previous during a rotation.
func (s *Signer) PublicKeyPEM() ([]byte, error) {
	var pub any
	if s.ed != nil {
		pub = s.ed.Public()
	} else {
		pub = &s.ec.PublicKey
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
