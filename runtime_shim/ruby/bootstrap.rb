# frozen_string_literal: true

# A Lambda runtime for Ruby handlers, modelled on aws_lambda_ric.
#
# Run as `ruby bootstrap.rb` with the Lambda environment: it loads the file
# named by `_HANDLER` from `LAMBDA_TASK_ROOT`, then fetches events from the
# Runtime API at `AWS_LAMBDA_RUNTIME_API` and posts each result back. The
# handler forms, the context object, the error bodies and types, the exit
# codes and the log output follow the official client,
# aws/aws-lambda-ruby-runtime-interface-client (the `aws_lambda_ric` gem),
# which the managed Ruby runtimes run.
#
# Standard library only, and no syntax newer than Ruby 2.7, because it runs
# under whichever Ruby the function's runtime selects.

require 'json'
require 'logger'
require 'net/http'
require 'stringio'

# Output must reach the worker when it is written, not when the process
# exits, so that each line lands in the log of the right invocation.
$stdout.sync = true
$stderr.sync = true

# The request id of the running invocation, which the official client keeps
# in this global for its log formatter.
$_global_aws_request_id = nil

# Request and response (de)serialization. Users may redefine these methods,
# as the official client allows.
module AwsLambda
  class Marshaller
    class << self
      # Parse a JSON event; any other content type reaches the handler as text.
      def marshall_request(raw_request)
        if raw_request['Content-Type'] == 'application/json'
          JSON.parse(raw_request.body)
        else
          raw_request.body
        end
      end

      # Return the response body, or [IO, 'application/unknown'] for an IO
      # response, which is sent as it is instead of as JSON.
      def marshall_response(method_response)
        case method_response
        when StringIO, IO
          [method_response, 'application/unknown']
        else
          method_response.to_json
        end
      end
    end
  end
end

# The `context:` argument, with the readers of the official LambdaContext.
class LambdaContext
  attr_reader :aws_request_id, :invoked_function_arn, :log_group_name,
              :log_stream_name, :function_name, :memory_limit_in_mb, :function_version,
              :identity, :client_context, :deadline_ms, :tenant_id

  def initialize(request)
    @deadline_ms = request['Lambda-Runtime-Deadline-Ms'].to_i
    @aws_request_id = request['Lambda-Runtime-Aws-Request-Id']
    @invoked_function_arn = request['Lambda-Runtime-Invoked-Function-Arn']
    @tenant_id = request['Lambda-Runtime-Aws-Tenant-Id']
    @log_group_name = ENV['AWS_LAMBDA_LOG_GROUP_NAME']
    @log_stream_name = ENV['AWS_LAMBDA_LOG_STREAM_NAME']
    @function_name = ENV['AWS_LAMBDA_FUNCTION_NAME']
    @memory_limit_in_mb = ENV['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']
    @function_version = ENV['AWS_LAMBDA_FUNCTION_VERSION']
    identity = request['Lambda-Runtime-Cognito-Identity']
    @identity = JSON.parse(identity) if identity
    client_context = request['Lambda-Runtime-Client-Context']
    @client_context = JSON.parse(client_context) if client_context
  end

  # Milliseconds left before the deadline, never below 0.
  def get_remaining_time_in_millis
    remaining = @deadline_ms - Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond)
    remaining.positive? ? remaining : 0
  end
end

# Lambda's text log format for loggers that write to standard output:
# `I, [2026-12-04T19:22:46.123456 #8]  INFO <request id> -- : message`.
class LogFormatter < Logger::Formatter
  FORMAT = '%<sev>s, [%<datetime>s #%<process>d] %<severity>5s %<request_id>s -- %<progname>s: %<msg>s'

  def call(severity, time, progname, msg)
    formatted = format(
      FORMAT,
      sev: severity[0..0], datetime: format_datetime(time), process: $$, severity: severity,
      request_id: $_global_aws_request_id, progname: progname, msg: msg2str(msg)
    )
    "#{formatted.encode('UTF-8', invalid: :replace, undef: :replace, replace: "\uFFFD")}\n"
  end
end

# Lambda's JSON log format, used when AWS_LAMBDA_LOG_FORMAT is JSON.
class JsonLogFormatter < Logger::Formatter
  def call(severity, time, progname, msg)
    payload = {
      timestamp: time.utc.strftime('%Y-%m-%dT%H:%M:%S.%6NZ'),
      level: severity,
      message: sanitize(msg.is_a?(Exception) ? msg.message : msg2str(msg)),
      requestId: $_global_aws_request_id
    }
    payload[:logger] = sanitize(progname) unless progname.nil? || progname.to_s.empty?
    if msg.is_a?(Exception)
      payload[:errorType] = msg.class.to_s
      payload[:errorMessage] = sanitize(msg.message)
      payload[:stackTrace] = Array(msg.backtrace).map { |line| sanitize(line) }
    end
    "#{JSON.generate(payload.compact)}\n"
  end

  private

  def sanitize(value)
    value.to_s.encode('UTF-8', invalid: :replace, undef: :replace, replace: "\uFFFD")
  end
end

# Give every Logger that writes to standard output or standard error
# Lambda's format and level, unless the caller chose its own, as the
# official client does through its telemetry log patch.
module LoggerPatch
  LEVELS = {
    'TRACE' => Logger::DEBUG, 'DEBUG' => Logger::DEBUG, 'INFO' => Logger::INFO,
    'WARN' => Logger::WARN, 'ERROR' => Logger::ERROR, 'FATAL' => Logger::FATAL
  }.freeze

  def initialize(logdev = nil, *args, **options)
    if logdev.nil? || logdev == $stdout || logdev == $stderr
      logdev = $stdout
      json = ENV['AWS_LAMBDA_LOG_FORMAT'].to_s.casecmp?('JSON')
      options[:formatter] ||= json ? JsonLogFormatter.new : LogFormatter.new
      level = LEVELS[ENV['AWS_LAMBDA_LOG_LEVEL'].to_s.upcase]
      options[:level] = level if level && !options.key?(:level)
    end
    super(logdev, *args, **options)
  end
end

Logger.prepend(LoggerPatch)

module LambdaRuntimeShim
  API_PREFIX = '/2018-06-01/runtime'
  ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type'
  USER_AGENT = "aws-lambda-ruby/#{RUBY_VERSION}-emulator"
  SHIM_FILE = File.expand_path(__FILE__)

  # Exit statuses of the official client: after an init error, and after a
  # critical exception in the handler (Ruby's exit(-4) and exit(-1)).
  EXIT_INIT_ERROR = -4
  EXIT_CRITICAL = -1

  # The Runtime API returned an unexpected status or could not be reached.
  class InvocationError < StandardError; end

  # An error to report to Lambda, in the official client's terms:
  # `errorType` is `<classification><ExceptionClass>`, such as
  # `Function<ArgumentError>` or `Init<LoadError>`.
  class LambdaError < StandardError
    # The header carries the real class only for these; otherwise
    # `Function<UserException>`.
    REPORTED_CLASSES = %w[
      ArgumentError NoMethodError Exception StandardError NameError LoadError SystemExit
      SystemStackError
    ].freeze
    MAX_STACK_FRAMES = 100

    attr_reader :error_type

    def initialize(original, classification)
      @error_class = original.class.to_s
      @error_type = "#{classification}<#{original.class}>"
      @error_message = message_of(original)
      @stack_trace = stack_trace_of(original)
      super(original.message)
    end

    def header_error_type
      REPORTED_CLASSES.include?(@error_class) ? @error_type : 'Function<UserException>'
    end

    def to_lambda_response
      { errorMessage: @error_message, errorType: @error_type, stackTrace: @stack_trace }
    end

    private

    # Ruby 3.1's error_highlight appends a code snippet to `message`; from
    # Ruby 3.2 on it goes to `detailed_message` and `message` stays plain.
    def message_of(error)
      if !error.respond_to?(:detailed_message) && error.respond_to?(:original_message)
        error.original_message
      else
        error.message
      end
    end

    # The user's frames: the backtrace up to the first frame of this
    # runtime, without Ruby's own `<internal:...>` frames.
    def stack_trace_of(error)
      frames = []
      (error.backtrace_locations || []).first(MAX_STACK_FRAMES).each do |location|
        break if location.absolute_path == SHIM_FILE
        next if location.path.start_with?('<internal:')

        frames << location.to_s
      end
      frames
    end
  end

  # A Runtime API client over one persistent HTTP/1.1 connection.
  class RuntimeClient
    def initialize(address)
      host, _, port = address.rpartition(':')
      # nil proxy: the Runtime API is local, so HTTP_PROXY must not apply to it.
      @http = Net::HTTP.new(host, Integer(port), nil)
      # GET /next blocks until the next event, however long that is.
      @http.read_timeout = nil
      @http.keep_alive_timeout = 60
    end

    # Block until the next event; return [request id, response].
    def next_invocation
      response = request(Net::HTTP::Get.new("#{API_PREFIX}/invocation/next", headers))
      unless response.is_a?(Net::HTTPSuccess)
        raise InvocationError, "Received #{response.code} when waiting for next invocation."
      end

      [response['Lambda-Runtime-Aws-Request-Id'], response]
    end

    def send_response(request_id, body, content_type)
      post("#{API_PREFIX}/invocation/#{request_id}/response", body,
           headers('Content-Type' => content_type))
    end

    def send_error(request_id, error)
      post("#{API_PREFIX}/invocation/#{request_id}/error", error.to_lambda_response.to_json,
           headers(ERROR_TYPE_HEADER => error.header_error_type))
    end

    def send_init_error(error)
      post("#{API_PREFIX}/init/error", error.to_lambda_response.to_json,
           headers(ERROR_TYPE_HEADER => error.header_error_type))
    end

    private

    def headers(extra = {})
      { 'User-Agent' => USER_AGENT }.merge(extra)
    end

    def post(path, body, headers)
      post = Net::HTTP::Post.new(path, headers)
      post.body = body
      response = request(post)
      unless response.code == '202'
        warn "Runtime API POST #{path} failed with #{response.code}: #{response.body}"
      end
      response
    end

    # The server may have closed the idle keep-alive connection while the
    # handler ran: retry once on a new one.
    def request(http_request)
      attempts = 0
      begin
        attempts += 1
        @http.start unless @http.started?
        @http.request(http_request)
      rescue IOError, SystemCallError, Net::ProtocolError => e
        @http.finish if @http.started?
        raise InvocationError, "#{e.class}: #{e.message}" if attempts >= 2

        retry
      end
    end
  end

  # The handler named by `_HANDLER`: `file.method`, or `file.Class.method`
  # where Class may be a namespace such as `Module::Class` and method is a
  # class-level method. The file is loaded before the first invocation, and
  # the method is looked up at each call, as in the official client.
  class Handler
    attr_reader :file_name

    def initialize(handler_string)
      parts = handler_string.to_s.split('.')
      case parts.size
      when 2 then @file_name, @method_name = parts
      when 3 then @file_name, @class_name, @method_name = parts
      else
        raise ArgumentError,
              "Invalid handler #{parts}, must be of form FILENAME.METHOD or FILENAME.CLASS.METHOD " \
              'where FILENAME corresponds with an existing Ruby source file FILENAME.rb, CLASS is ' \
              'an optional module/class namespace and METHOD is a callable method. If using ' \
              'CLASS, METHOD must be a class-level method.'
      end
    end

    def load(task_root)
      require File.expand_path(@file_name, task_root)
    end

    # Call the handler; return [body, content type].
    def call(event, context)
      receiver = @class_name ? Kernel.const_get(@class_name) : TOPLEVEL_BINDING.receiver
      response = receiver.__send__(@method_name, event: event, context: context)
      body, content_type = AwsLambda::Marshaller.marshall_response(response)
      [body, content_type || 'application/json']
    end
  end

  # Print an error as the official client's LambdaLogger does.
  def self.log_error(error, message)
    puts message
    puts JSON.pretty_generate(error.to_lambda_response)
  end

  # Run one invocation; return false when the runtime must exit afterwards.
  def self.invoke(client, handler, request_id, raw_request)
    begin
      event = AwsLambda::Marshaller.marshall_request(raw_request)
      context = LambdaContext.new(raw_request)
      body, content_type = handler.call(event, context)
    rescue NoMethodError, NameError => e
      # A missing handler method or class, or a typo in the handler: the
      # official client reports it and then exits, so a new environment
      # serves the next invocation.
      return report(client, request_id, LambdaError.new(e, 'Function'),
                    'Critical exception from handler')
    rescue StandardError => e
      report(client, request_id, LambdaError.new(e, 'Function'), 'Error raised from handler method')
      return true
    rescue Exception => e # rubocop:disable Lint/RescueException
      # SystemExit, NoMemoryError, SignalException and the like.
      return report(client, request_id, LambdaError.new(e, 'Function'),
                    'Critical exception from handler')
    end

    body = body.read if content_type == 'application/unknown'
    client.send_response(request_id, body, content_type)
    true
  end

  def self.report(client, request_id, error, message)
    log_error(error, message)
    client.send_error(request_id, error)
    false
  end

  def self.next_invocation(client)
    client.next_invocation
  rescue SignalException => e
    puts 'Next invocation HTTP request from the runtime interface client was interrupted ' \
         "with a #{e} SIGNAL, gracefully shutting down."
    exit 0
  end

  def self.run
    client = RuntimeClient.new(ENV.fetch('AWS_LAMBDA_RUNTIME_API'))
    task_root = ENV['LAMBDA_TASK_ROOT'] || Dir.pwd
    $LOAD_PATH.unshift(task_root) unless $LOAD_PATH.include?(task_root)
    handler_string = ENV['_HANDLER']

    begin
      handler = Handler.new(handler_string)
      handler.load(task_root)
    rescue Exception => e # rubocop:disable Lint/RescueException
      # LoadError, SyntaxError, or anything the file raised at load time.
      error = LambdaError.new(e, 'Init')
      log_error(error, "Init error when loading handler #{handler_string}")
      client.send_init_error(error)
      exit(EXIT_INIT_ERROR)
    end

    loop do
      request_id, raw_request = next_invocation(client)
      $_global_aws_request_id = request_id
      trace_id = raw_request['Lambda-Runtime-Trace-Id']
      if trace_id
        ENV['_X_AMZN_TRACE_ID'] = trace_id
      else
        ENV.delete('_X_AMZN_TRACE_ID')
      end
      exit(EXIT_CRITICAL) unless invoke(client, handler, request_id, raw_request)
    end
  rescue InvocationError => e
    # The Runtime API is gone, so nothing can be reported: stop.
    warn "Lambda runtime: the Runtime API request failed: #{e.message}"
    exit 1
  end
end

LambdaRuntimeShim.run if $PROGRAM_NAME == __FILE__
