package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

func hmacSum(secret, data []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(data)
	return m.Sum(nil)
}

func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
