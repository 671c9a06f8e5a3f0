// Package grpcx is the gRPC plumbing shared by the control plane (client) and
// the workers (server): error kinds mapped to gRPC status codes in one place,
// shared-secret authentication, and request metrics.
package grpcx

import (
	"context"
	"crypto/subtle"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/errs"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// errorDomain tags the ErrorInfo detail that carries an errs code.
const errorDomain = "opensandbox"

// kindCodes maps error kinds to gRPC codes; the first entry of a code is the
// kind it maps back to.
var kindCodes = []struct {
	kind errs.Kind
	code codes.Code
}{
	{errs.KindInvalid, codes.InvalidArgument},
	{errs.KindInvalid, codes.FailedPrecondition},
	{errs.KindUnauthenticated, codes.Unauthenticated},
	{errs.KindForbidden, codes.PermissionDenied},
	{errs.KindNotFound, codes.NotFound},
	{errs.KindConflict, codes.AlreadyExists},
	{errs.KindConflict, codes.Aborted},
	{errs.KindTooLarge, codes.OutOfRange},
	{errs.KindQuota, codes.ResourceExhausted},
	{errs.KindUnavailable, codes.Unavailable},
	{errs.KindTimeout, codes.DeadlineExceeded},
	{errs.KindTimeout, codes.Canceled},
	// Below the kinds that share a code with one above: the detail's HTTP
	// status tells them apart (see FromStatus).
	{errs.KindRange, codes.OutOfRange},
	{errs.KindNoSpace, codes.ResourceExhausted},
}

// Code maps an error kind to its gRPC code.
func Code(k errs.Kind) codes.Code {
	for _, kc := range kindCodes {
		if kc.kind == k {
			return kc.code
		}
	}
	return codes.Internal
}

// kindOf is the inverse of Code for errors that come without a detail.
func kindOf(c codes.Code) errs.Kind {
	for _, kc := range kindCodes {
		if kc.code == c {
			return kc.kind
		}
	}
	return errs.KindInternal
}

// ToStatus turns an error into a gRPC status error carrying its errs code.
// Internal causes are not sent.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isErrs(err) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "canceled")
	}
	if errors.Is(err, context.DeadlineExceeded) && !isErrs(err) {
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	e := errs.As(err)
	st := status.New(Code(e.Kind), e.Message)
	info := &errdetails.ErrorInfo{Reason: e.Code, Domain: errorDomain,
		Metadata: map[string]string{"http_status": strconv.Itoa(e.Kind.HTTPStatus())}}
	if d, derr := st.WithDetails(info); derr == nil {
		st = d
	}
	return st.Err()
}

func isErrs(err error) bool {
	var e *errs.Error
	return errors.As(err, &e)
}

// FromStatus turns an error from a gRPC call back into an *errs.Error with
// the code the worker sent; transport failures become unavailable errors.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return errs.Unavailable("worker_unreachable", "worker unreachable").WithCause(err)
	}
	code := ""
	kind := kindOf(st.Code())
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			code = info.Reason
			if hs, err := strconv.Atoi(info.Metadata["http_status"]); err == nil {
				kind = errs.FromHTTP(hs, code, "").Kind
			}
		}
	}
	if code == "" {
		switch st.Code() {
		case codes.Unavailable:
			return errs.Unavailable("worker_unreachable", "worker unreachable").WithCause(err)
		case codes.Unauthenticated, codes.PermissionDenied:
			// The worker refused the control plane itself: a configuration
			// fault, not the API caller's.
			return errs.Internal("worker refused the control plane's credentials", err)
		}
		code = strings.ToLower(st.Code().String())
	}
	return &errs.Error{Kind: kind, Code: code, Message: st.Message(), Err: err}
}

// authMetadata is the metadata key carrying the shared secret.
const authMetadata = "authorization"

// SecretAuth checks the shared secret on every call of a server.
type SecretAuth struct {
	secret []byte
	onFail func(method string)
}

// NewSecretAuth returns the server side of shared-secret authentication;
// onFail (optional) observes refused calls.
func NewSecretAuth(secret string, onFail func(method string)) *SecretAuth {
	return &SecretAuth{secret: []byte(secret), onFail: onFail}
}

func (a *SecretAuth) check(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(authMetadata) {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok && len(a.secret) > 0 &&
			subtle.ConstantTimeCompare([]byte(tok), a.secret) == 1 {
			return nil
		}
	}
	if a.onFail != nil {
		a.onFail(method)
	}
	return status.Error(codes.Unauthenticated, "missing or wrong cluster credentials")
}

// Unary is the unary server interceptor.
func (a *SecretAuth) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// Stream is the stream server interceptor.
func (a *SecretAuth) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// secretCreds attaches the shared secret to every call of a client.
type secretCreds struct{ secret string }

func (s secretCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{authMetadata: "Bearer " + s.secret}, nil
}

func (secretCreds) RequireTransportSecurity() bool { return false }

// DialOptions configures a client connection to a worker.
type DialOptions struct {
	Secret  string
	Metrics *Metrics // optional
	// Transport defaults to plaintext (the cluster network); ClientCreds
	// encrypts, verifies the worker and can present a client certificate.
	Transport grpc.DialOption
}

// NewClient returns a lazily connecting client for addr (host:port).
func NewClient(addr string, o DialOptions) (*grpc.ClientConn, error) {
	transport := o.Transport
	if transport == nil {
		transport = grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	opts := []grpc.DialOption{
		transport,
		grpc.WithPerRPCCredentials(secretCreds{secret: o.Secret}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
	}
	if o.Metrics != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(o.Metrics.UnaryClient), grpc.WithChainStreamInterceptor(o.Metrics.StreamClient))
	}
	return grpc.NewClient(addr, opts...)
}

// MaxMessage bounds one gRPC message (file contents travel in one message).
const MaxMessage = 64 << 20

// ServerOptions returns the options of a worker's gRPC server: the secret
// checked on every call, metrics, errors mapped to status codes, and extra
// options (ServerCreds for TLS).
func ServerOptions(auth *SecretAuth, m *Metrics, extra ...grpc.ServerOption) []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{}
	stream := []grpc.StreamServerInterceptor{}
	if m != nil {
		unary = append(unary, m.UnaryServer)
		stream = append(stream, m.StreamServer)
	}
	unary = append(unary, auth.Unary, statusUnary)
	stream = append(stream, auth.Stream, statusStream)
	return append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.MaxSendMsgSize(MaxMessage),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}, extra...)
}

// statusUnary maps handler errors to status errors in one place.
func statusUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	return resp, ToStatus(err)
}

func statusStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return ToStatus(h(srv, ss))
}
