<?php
// Interop smoke test with PHP's stomp extension (PECL stomp 2.0.3, Debian
// php-stomp), used the way PHP code usually does: CONNECT with a login only,
// SUBSCRIBE without an id, a persistent SEND with a receipt (the extension
// waits for that RECEIPT and keeps a MESSAGE arriving first for readFrame),
// read the MESSAGE, ACK it with all of the MESSAGE's headers, DISCONNECT
// without a receipt. Then a second connection checks that nothing is left on
// the queue (the ACKs worked). Prints "ok ..." and exits 0 on success.
//
// The extension reads exactly two bytes after a content-length body and
// needs them to be NUL and LF; a broker ending frames with NUL alone makes
// it lose its place in the stream at the first SEND's receipt.

function fail(string $why): void
{
    fwrite(STDERR, "php-stomp: $why\n");
    exit(1);
}

[, $host, $port] = $argv;
$broker = "tcp://$host:$port";
$queue = '/queue/php.smoke';
$bodies = [];

try {
    $stomp = new Stomp($broker, 'php-user');
    $stomp->setReadTimeout(10);
    if (!$stomp->subscribe($queue, ['ack' => 'client'])) {
        fail('subscribe: ' . $stomp->error());
    }
    for ($i = 1; $i <= 3; $i++) {
        $body = "php-$i";
        if (!$stomp->send($queue, $body, ['persistent' => 'true', 'receipt' => "send-$i"])) {
            fail("send $body: " . $stomp->error());
        }
        $frame = $stomp->readFrame();
        if ($frame === false) {
            fail("no MESSAGE for $body: " . $stomp->error());
        }
        if ($frame->command !== 'MESSAGE' || $frame->body !== $body) {
            fail("expected MESSAGE $body, got " . var_export($frame, true));
        }
        if (!$stomp->ack($frame)) {
            fail("ack $body: " . $stomp->error());
        }
        $bodies[] = $frame->body;
    }
    // The destructor sends DISCONNECT (no receipt) and closes the socket.
    unset($stomp);

    $check = new Stomp($broker, 'php-user');
    $check->setReadTimeout(1);
    if (!$check->subscribe($queue, ['ack' => 'client'])) {
        fail('second subscribe: ' . $check->error());
    }
    $left = $check->readFrame();
    if ($left !== false) {
        fail('acknowledged message came back: ' . var_export($left, true));
    }
    unset($check);
} catch (StompException $e) {
    fail(get_class($e) . ': ' . $e->getMessage() . ' ' . $e->getDetails());
}

echo 'ok ' . implode(' ', $bodies) . "\n";
