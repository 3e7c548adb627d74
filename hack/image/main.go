// Command wco-image assembles the operator's container image without a container engine, using
// go-containerregistry, and serves an HTTPS fixture for the image's tests. hack/image.sh builds
// it (pinned by this module's go.mod and go.sum) and calls it.
//
//	wco-image assemble --binary FILE --out DIR --tarball FILE --repository REPO --version V
//	          --revision SHA --source URL --epoch SECONDS
//	    Writes an OCI image layout to DIR (and a `docker load` tarball) with one layer: the static
//	    binary, Mozilla's public CA roots and /etc/passwd and /etc/group naming user 65532. Every
//	    timestamp is --epoch, so the same inputs give the same digest. Prints the manifest digest.
//	wco-image https-fixture --dir DIR
//	    Serves GET /v1/health over HTTPS on 127.0.0.1 with a fresh CA; writes DIR/ca.pem and
//	    DIR/addr, and stops when stdin closes.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Where the binary and the roots live in the image. rustls-native-certs (through
// rustls-platform-verifier, reqwest's `rustls` feature) probes this file first on Linux.
const (
	binaryPath = "usr/local/bin/webhook-ca-operator"
	rootsPath  = "etc/ssl/certs/ca-certificates.crt"
	// The "nonroot" user of distroless images; the chart's podSecurityContext runs as it too.
	uid = 65532
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wco-image assemble|https-fixture [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "assemble":
		err = assemble(os.Args[2:])
	case "https-fixture":
		err = httpsFixture(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wco-image:", err)
		os.Exit(1)
	}
}

func assemble(args []string) error {
	fs := flag.NewFlagSet("assemble", flag.ContinueOnError)
	binary := fs.String("binary", "", "the static operator binary")
	out := fs.String("out", "", "OCI image layout directory to (re)create")
	tarPath := fs.String("tarball", "", "also write a `docker load` tarball here")
	repository := fs.String("repository", "", "image repository, e.g. ghcr.io/o/webhook-ca-operator")
	version := fs.String("version", "", "the operator's version: tag and OCI version label")
	revision := fs.String("revision", "", "the source revision (git commit)")
	source := fs.String("source", "", "the source repository URL")
	epoch := fs.Int64("epoch", 0, "every timestamp in the image (SOURCE_DATE_EPOCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for flagName, v := range map[string]string{"binary": *binary, "out": *out, "tarball": *tarPath,
		"repository": *repository, "version": *version, "revision": *revision, "source": *source} {
		if v == "" {
			return fmt.Errorf("--%s is required", flagName)
		}
	}
	created := time.Unix(*epoch, 0).UTC()

	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	roots, n := publicRoots()
	layerTar, err := rootfs(created, bin, roots)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: fmt.Sprintf("hack/image.sh: %s, %d public CA roots, /etc/passwd", binaryPath, n),
			Comment:   "assembled with go-containerregistry",
		},
	})
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: created}
	cfg.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{"/" + binaryPath},
		Cmd:        []string{"run"},
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "webhook-ca-operator",
			"org.opencontainers.image.description": "Keeps the webhook CA bundle of WhatsApp Business On-Premises API installations in step with Secrets in the cluster",
			"org.opencontainers.image.source":      *source,
			"org.opencontainers.image.version":     *version,
			"org.opencontainers.image.revision":    *revision,
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.created":     created.Format(time.RFC3339),
		},
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}

	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(*repository + ":" + *version)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": *version,
	})); err != nil {
		return err
	}
	if err := tarball.WriteToFile(*tarPath, ref, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Println(digest)
	return nil
}

// publicRoots returns Mozilla's NSS roots as PEM, from the pinned x509roots/fallback module. Roots
// that carry a constraint X.509 cannot express (NSS "distrust after" dates) are left out: rustls
// would trust them without the constraint.
func publicRoots() ([]byte, int) {
	var buf bytes.Buffer
	n := 0
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		// pem.Encode into a bytes.Buffer cannot fail.
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate})
		n++
	}
	return buf.Bytes(), n
}

// rootfs builds the layer's tar: directories first, entries in a fixed order, owner root and every
// modification time `created`, so that the bytes depend on the inputs only.
func rootfs(created time.Time, binary, roots []byte) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid)
	entries := []struct {
		path string
		mode int64
		data []byte
	}{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, []byte(group)},
		{"etc/passwd", 0o644, []byte(passwd)},
		{"etc/ssl/", 0o755, nil},
		{"etc/ssl/certs/", 0o755, nil},
		{rootsPath, 0o644, roots},
		// The operator writes no files; a world-writable /tmp is still what libraries expect.
		{"tmp/", 0o1777, nil},
		{"usr/", 0o755, nil},
		{"usr/local/", 0o755, nil},
		{"usr/local/bin/", 0o755, nil},
		{binaryPath, 0o755, binary},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.path,
			Mode:    e.mode,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.data == nil {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func httpsFixture(args []string) error {
	fs := flag.NewFlagSet("https-fixture", flag.ContinueOnError)
	dir := fs.String("dir", "", "where to write ca.pem and addr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required")
	}
	cert, caPEM, err := fixtureCert()
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "ca.pem"), caPEM, 0o644); err != nil {
		return err
	}
	// addr last: its presence tells the caller that the server is ready.
	if err := os.WriteFile(filepath.Join(*dir, "addr"), []byte(ln.Addr().String()), 0o644); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"health":{"gateway_status":"connected"},"meta":{"version":"v2.0"}}`)
	})
	// The test's first call is refused by the client on purpose; its handshake error is expected.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	// The caller holds stdin open for as long as it needs the server.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// fixtureCert makes a CA and a server certificate for 127.0.0.1 signed by it.
func fixtureCert() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wco-image test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
