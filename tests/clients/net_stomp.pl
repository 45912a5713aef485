#!/usr/bin/perl
# Interop smoke test with Perl's Net::Stomp (Debian libnet-stomp-perl):
# send three messages, consume them with client acks, exit 0 when all arrived.
use strict;
use warnings;
use Net::Stomp;

my ($host, $port) = @ARGV;
my $stomp = Net::Stomp->new({ hostname => $host, port => $port });
$stomp->connect({ login => 'guest', passcode => 'guest' }) or die "connect failed";
for my $i (1 .. 3) {
    $stomp->send_with_receipt({ destination => "/queue/perl.smoke", body => "perl-$i" }) or die "no receipt";
}
$stomp->subscribe({ destination => '/queue/perl.smoke', ack => 'client', id => 'p1' });
my @got;
for (1 .. 3) {
    $stomp->can_read({ timeout => 10 }) or die "no message within 10s";
    my $frame = $stomp->receive_frame or die "connection closed";
    die "unexpected frame " . $frame->command unless $frame->command eq 'MESSAGE';
    push @got, $frame->body;
    $stomp->ack({ frame => $frame });
}
$stomp->disconnect;
die "got @got" unless "@got" eq "perl-1 perl-2 perl-3";
print "ok @got\n";
