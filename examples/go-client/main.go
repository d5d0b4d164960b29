// Command stigmer-go-client walks one execution through the Stigmer
// BackendService contract, as a backend's user and as a runner would:
// it stores a secret, applies an agent instance that references it, creates
// an execution, watches it, claims it, fetches its context (the secret
// resolved), completes it, and follows the watch to its end.
//
//	stigmer-go-client -endpoint 127.0.0.1:7780 -token-file token -plaintext
//	stigmer-go-client -endpoint host:7780 -token-file token -ca ca.pem
//
// It prints one line per step; secret values are never printed.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "stigmer-go-client/gen/stigmer/backend/v1"
)

const (
	// The major revision this client is written for: the `v1` of the proto package.
	contractMajor = "1"
	agentName     = "go-client-demo"
	secretName    = "GO_CLIENT_KEY"
	runnerID      = "go-client-runner"
)

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:7780", "HOST:PORT of the backend")
	tokenFile := flag.String("token-file", "", "file holding the bearer token (default: $STIGMER_TOKEN)")
	caFile := flag.String("ca", "", "PEM file of the CA that signed the server's certificate (TLS)")
	plaintext := flag.Bool("plaintext", false, "connect without TLS")
	flag.Parse()

	token, err := readToken(*tokenFile)
	if err == nil {
		err = run(*endpoint, token, *caFile, *plaintext)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func readToken(path string) (string, error) {
	if path == "" {
		if token := os.Getenv("STIGMER_TOKEN"); token != "" {
			return token, nil
		}
		return "", errors.New("no token: give -token-file or set STIGMER_TOKEN")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("no token in %s", path)
	}
	return token, nil
}

func dial(endpoint, caFile string, plaintext bool) (*grpc.ClientConn, error) {
	transport := grpc.WithInsecure()
	if !plaintext {
		var tlsCredentials credentials.TransportCredentials
		tlsCredentials = credentials.NewTLS(nil) // the system's trusted roots
		if caFile != "" {
			var err error
			if tlsCredentials, err = credentials.NewClientTLSFromFile(caFile, ""); err != nil {
				return nil, err
			}
		}
		transport = grpc.WithTransportCredentials(tlsCredentials)
	}
	return grpc.Dial(endpoint, transport)
}

func run(endpoint, token, caFile string, plaintext bool) error {
	conn, err := dial(endpoint, caFile, plaintext)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pb.NewBackendServiceClient(conn)

	// Every call carries the token in the `authorization` metadata, as the contract asks.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)

	info, err := client.GetBackendInfo(ctx, &pb.GetBackendInfoRequest{})
	if err != nil {
		return fmt.Errorf("GetBackendInfo: %w", err)
	}
	if !strings.HasPrefix(info.ContractVersion, contractMajor+".") {
		return fmt.Errorf("backend implements contract %s, this client needs %s.x", info.ContractVersion, contractMajor)
	}
	fmt.Printf("backend: %s, contract %s, capabilities %v\n", info.BackendKind, info.ContractVersion, info.Capabilities)

	secretValue, err := randomHex(16)
	if err != nil {
		return err
	}
	put, err := client.PutSecret(ctx, &pb.PutSecretRequest{Name: secretName, Value: secretValue})
	if err != nil {
		return fmt.Errorf("PutSecret: %w", err)
	}
	fmt.Printf("secret: %s stored (created %t)\n", put.Secret.Name, put.Created)

	applied, err := client.ApplyAgentInstance(ctx, &pb.ApplyAgentInstanceRequest{
		Name: agentName,
		Spec: &pb.AgentInstanceSpec{
			Instructions: "Echo the input.",
			Model:        &pb.ModelConfig{Provider: "ollama", Model: "llama3"},
			Env:          []*pb.EnvironmentVariable{{Name: "API_KEY", Value: "Bearer ${.secrets." + secretName + "}"}},
		},
	})
	if err != nil {
		return fmt.Errorf("ApplyAgentInstance: %w", err)
	}
	fmt.Printf("agent: %s %s\n", applied.AgentInstance.Name, applied.Outcome)

	requestID, err := randomHex(8)
	if err != nil {
		return err
	}
	created, err := client.CreateExecution(ctx, &pb.CreateExecutionRequest{
		RequestId:     "go-client-" + requestID,
		AgentInstance: &pb.AgentInstanceRef{Kind: &pb.AgentInstanceRef_Name{Name: agentName}},
		Input:         &pb.ExecutionInput{Message: "hello from Go"},
	})
	if err != nil {
		return fmt.Errorf("CreateExecution: %w", err)
	}
	execution := created.Execution
	fmt.Printf("execution: created %t, v%d %s\n", created.Created, execution.Version, execution.Status.Phase)

	// Watch first: the stream starts with the current state, then brings every later version.
	watch, err := client.WatchExecution(ctx, &pb.WatchExecutionRequest{ExecutionId: execution.Id})
	if err != nil {
		return fmt.Errorf("WatchExecution: %w", err)
	}
	if err := printNext(watch); err != nil {
		return err
	}

	// The runner's side: claim with the version read, so a racing runner loses with ABORTED.
	claimed, err := client.UpdateExecutionStatus(ctx, &pb.UpdateExecutionStatusRequest{
		ExecutionId:     execution.Id,
		Phase:           pb.ExecutionPhase_EXECUTION_PHASE_RUNNING,
		RunnerId:        runnerID,
		ExpectedVersion: execution.Version,
		Message:         "claimed",
		LeaseDuration:   durationpb.New(30 * time.Second),
	})
	if err != nil {
		return fmt.Errorf("UpdateExecutionStatus (claim): %w", err)
	}
	fmt.Printf("claim: v%d %s by %s\n", claimed.Execution.Version, claimed.Execution.Status.Phase, claimed.Execution.Status.RunnerId)

	runContext, err := client.GetExecutionContext(ctx, &pb.GetExecutionContextRequest{ExecutionId: execution.Id, RunnerId: runnerID})
	if err != nil {
		return fmt.Errorf("GetExecutionContext: %w", err)
	}
	resolved := runContext.Environment["API_KEY"] == "Bearer "+secretValue && runContext.Secrets[secretName] == secretValue
	fmt.Printf("context: agent %s, input %q, API_KEY resolved %t, secrets given %d\n",
		runContext.AgentInstance.Name, runContext.Execution.Input.Message, resolved, len(runContext.Secrets))

	completed, err := client.UpdateExecutionStatus(ctx, &pb.UpdateExecutionStatusRequest{
		ExecutionId:     claimed.Execution.Id,
		Phase:           pb.ExecutionPhase_EXECUTION_PHASE_SUCCEEDED,
		RunnerId:        runnerID,
		ExpectedVersion: claimed.Execution.Version,
		Message:         "done",
		Output:          &pb.ExecutionOutput{Text: "echo: " + runContext.Execution.Input.Message},
	})
	if err != nil {
		return fmt.Errorf("UpdateExecutionStatus (complete): %w", err)
	}
	fmt.Printf("complete: v%d %s, output %q\n", completed.Execution.Version, completed.Execution.Status.Phase, completed.Execution.Status.Output.Text)

	// The stream ends by itself right after the terminal state.
	for {
		err := printNext(watch)
		if err == io.EOF {
			fmt.Println("watch: ended")
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func printNext(watch pb.BackendService_WatchExecutionClient) error {
	state, err := watch.Recv()
	if err != nil {
		if err == io.EOF {
			return err
		}
		return fmt.Errorf("WatchExecution: %w", err)
	}
	fmt.Printf("watch: v%d %s\n", state.Execution.Version, state.Execution.Status.Phase)
	return nil
}

func randomHex(size int) (string, error) {
	buffer := make([]byte, size)
	if _, err := rand.Read(buffer); err != nil {
		return "", err
	}
	return hex.EncodeToString(buffer), nil
}
