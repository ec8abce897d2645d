// Command etcdcompact compacts an etcd keyspace to its current revision, so
// that watches started from an older resourceVersion get "410 Gone" from
// kube-apiserver. It prints the revision it compacted to.
//
// usage: etcdcompact http://127.0.0.1:PORT
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: etcdcompact ENDPOINT")
		os.Exit(2)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdcompact:", err)
		os.Exit(1)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Write a throwaway key so there is a revision newer than anything a
	// client may be holding, then compact to it.
	put, err := cli.Put(ctx, "/runboat-test/compact-marker", time.Now().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdcompact: put:", err)
		os.Exit(1)
	}
	rev := put.Header.Revision
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		fmt.Fprintln(os.Stderr, "etcdcompact: compact:", err)
		os.Exit(1)
	}
	fmt.Println(rev)
}
