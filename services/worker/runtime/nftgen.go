package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// nftGeneration returns the nftables ruleset generation id, which the
// kernel increments on every committed change to any table. One netlink
// round trip (NFT_MSG_GETGEN), some microseconds: it lets the firewall check
// skip listing its tables when nothing has changed since the last check.
func nftGeneration() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("netfilter netlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, err
	}
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	const msgType = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN
	req := make([]byte, unix.NLMSG_HDRLEN+4) // header + struct nfgenmsg (AF_UNSPEC, NFNETLINK_V0, res_id 0)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], msgType)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence number
	if err := unix.Sendto(fd, req, 0, kernel); err != nil {
		return 0, fmt.Errorf("send NFT_MSG_GETGEN: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("receive NFT_MSG_NEWGEN: %w", err)
	}
	return parseGeneration(buf[:n])
}

// parseGeneration reads NFTA_GEN_ID from the kernel's answer.
func parseGeneration(b []byte) (uint32, error) {
	for len(b) >= unix.NLMSG_HDRLEN {
		size := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if size < unix.NLMSG_HDRLEN || size > len(b) {
			return 0, errors.New("malformed netlink message")
		}
		data := b[unix.NLMSG_HDRLEN:size]
		switch {
		case typ == unix.NLMSG_ERROR && len(data) >= 4:
			if errno := int32(binary.NativeEndian.Uint32(data)); errno != 0 {
				return 0, fmt.Errorf("NFT_MSG_GETGEN: %w", unix.Errno(-errno))
			}
		case typ == unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN && len(data) >= 4:
			attrs := data[4:] // after struct nfgenmsg
			for len(attrs) >= 4 {
				alen := int(binary.NativeEndian.Uint16(attrs[0:]))
				atyp := binary.NativeEndian.Uint16(attrs[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
				if alen < 4 || alen > len(attrs) {
					break
				}
				if atyp == unix.NFTA_GEN_ID && alen >= 8 {
					return binary.BigEndian.Uint32(attrs[4:]), nil
				}
				attrs = attrs[min((alen+3)&^3, len(attrs)):]
			}
		}
		b = b[min((size+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return 0, errors.New("no generation id in the kernel's answer")
}
