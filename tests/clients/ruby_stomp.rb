# Interop smoke test with Ruby's stomp gem (Debian ruby-stomp): publish three
# messages, consume them with client acks, exit 0 when all arrived in order.
require 'stomp'
require 'timeout'

host, port = ARGV
client = Stomp::Client.new(hosts: [{ login: '', passcode: '', host: host, port: port.to_i }],
                           connect_headers: { 'accept-version' => '1.2', 'host' => '/' },
                           reliable: false)
got = Queue.new
client.subscribe('/queue/ruby.smoke', ack: 'client-individual', id: 'r1') do |msg|
  got << msg.body
  client.ack(msg)
end
3.times { |i| client.publish('/queue/ruby.smoke', "ruby-#{i + 1}") }
bodies = Timeout.timeout(10) { 3.times.map { got.pop } }
client.close
raise "got #{bodies}" unless bodies == %w[ruby-1 ruby-2 ruby-3]
puts "ok #{bodies.join(' ')}"
