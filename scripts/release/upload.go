package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ObjectPutter is the S3 call an upload makes.
type ObjectPutter interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// TokenGetter is the ECR call an image push makes.
type TokenGetter interface {
	GetAuthorizationToken(ctx context.Context, in *ecr.GetAuthorizationTokenInput, opts ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
}

// Uploader puts a release into one region.
type Uploader struct {
	S3  ObjectPutter
	ECR TokenGetter
}

// NewAWSUploader uses the default AWS credential chain (environment, SSO,
// profile) for region.
func NewAWSUploader(ctx context.Context, region string) (*Uploader, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, err
	}
	return &Uploader{S3: s3.NewFromConfig(cfg), ECR: ecr.NewFromConfig(cfg)}, nil
}

// Uploaded says where a release went.
type Uploaded struct {
	Keys   []string
	Images map[string]string // image name -> repository@digest
}

// Upload puts the tarball and its checksum under releases/<version>/ in
// t.Bucket (S3 checks the SHA-256 we send, so a corrupted upload is
// refused), then pushes the images to t.Registry.
func (u *Uploader) Upload(ctx context.Context, log *slog.Logger, rel *Release, t Target) (*Uploaded, error) {
	res := &Uploaded{Images: map[string]string{}}
	for _, p := range []string{rel.Tarball, rel.Tarball + ".sha256"} {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		key := "releases/" + rel.Version + "/" + filepath.Base(p)
		sum := sha256.Sum256(data)
		if p == rel.Tarball && hex.EncodeToString(sum[:]) != rel.SHA256 {
			return nil, fmt.Errorf("%s changed since it was built", p)
		}
		ctype := "application/gzip"
		if strings.HasSuffix(p, ".sha256") {
			ctype = "text/plain"
		}
		_, err = u.S3.PutObject(ctx, &s3.PutObjectInput{
			Bucket:            aws.String(t.Bucket),
			Key:               aws.String(key),
			Body:              bytes.NewReader(data),
			ContentLength:     aws.Int64(int64(len(data))),
			ContentType:       aws.String(ctype),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256,
			ChecksumSHA256:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		})
		if err != nil {
			return nil, fmt.Errorf("put s3://%s/%s: %w", t.Bucket, key, err)
		}
		log.Info("uploaded", "bucket", t.Bucket, "key", key, "bytes", len(data))
		res.Keys = append(res.Keys, key)
	}
	if t.Registry == "" {
		return res, nil
	}
	if len(rel.Images) == 0 {
		return nil, errors.New("a registry was given but the release has no images")
	}
	auth, err := u.ecrAuth(ctx)
	if err != nil {
		return nil, err
	}
	for image, p := range rel.Images {
		tag, err := name.NewTag(t.Registry + "/" + image + ":" + rel.Version)
		if err != nil {
			return nil, err
		}
		lt := localTag(image, rel.Version)
		img, err := tarball.ImageFromPath(p, &lt)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", p, err)
		}
		if err := remote.Write(tag, img, remote.WithAuth(auth), remote.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("push %s: %w", tag, err)
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, err
		}
		ref := tag.Context().Digest(digest.String()).String()
		res.Images[image] = ref
		log.Info("image pushed", "image", ref)
	}
	return res, nil
}

// ecrAuth turns ECR's authorization token (base64 "AWS:<password>", valid 12
// hours) into registry credentials.
func (u *Uploader) ecrAuth(ctx context.Context) (authn.Authenticator, error) {
	out, err := u.ECR.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return nil, fmt.Errorf("ecr authorization: %w", err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return nil, errors.New("ecr authorization: no token in the answer")
	}
	raw, err := base64.StdEncoding.DecodeString(*out.AuthorizationData[0].AuthorizationToken)
	if err != nil {
		return nil, fmt.Errorf("ecr authorization token: %w", err)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil, errors.New("ecr authorization token is not user:password")
	}
	return &authn.Basic{Username: user, Password: pass}, nil
}
