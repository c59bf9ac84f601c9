// Real models' chat templates rendered exactly as transformers does (oracle: real Jinja).
// Not the interpreter's unit, error and limit tests: those are in test_chat_template.cpp.
#include <gtest/gtest.h>

#include <ctime>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace lmkit {
namespace {

// ---- Templates, verbatim: the "chat_template" string of each model's tokenizer_config.json.

// meta-llama/Llama-2-7b-chat-hf
constexpr const char *kLlama2 =
    R"tmpl({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})tmpl";
// meta-llama/Meta-Llama-3-8B-Instruct
constexpr const char *kLlama3 =
    R"tmpl({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>

'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>

' }}{% endif %})tmpl";
// meta-llama/Llama-3.1-8B-Instruct
constexpr const char *kLlama31 = R"tmpl({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)tmpl";
// meta-llama/Llama-3.2-3B-Instruct (the date comes from strftime_now unless date_string is given)
constexpr const char *kLlama32 = R"tmpl({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)tmpl";
// mistralai/Mistral-7B-Instruct-v0.1 (its first template)
constexpr const char *kMistralV01 =
    R"tmpl({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})tmpl";
// mistralai/Mistral-7B-Instruct-v0.2 (its first template; Mixtral-8x7B-Instruct-v0.1 ships the
// same)
constexpr const char *kMistralV02 =
    R"tmpl({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})tmpl";
// mistralai/Mistral-7B-Instruct-v0.3 (current template: system message joins the last user turn)
constexpr const char *kMistralV03 = R"tmpl({%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
)tmpl";
// mistralai/Mistral-7B-Instruct-v0.3 (its May 2024 template: tabs, `tool|items`, a dict literal)
constexpr const char *kMistralV03May2024 = R"tmpl({{- bos_token }}
{%- set user_messages = messages | selectattr('role', 'equalto', 'user') | list %}
{%- for message in messages %}
    {%- if message['role'] == 'user' %}
        {%- if tools and (message == user_messages[-1]) %}
            {{- ' [AVAILABLE_TOOLS] [' }}
            {%- for tool in tools %}
		{%- set tool = tool.function %}
		{{- '{"type": "function", "function": {' }}
		{%- for key, val in tool|items if key != "return" %}
		    {%- if val is string %}
			{{- '"' + key + '": "' + val + '"' }}
		    {%- else %}
			{{- '"' + key + '": ' + val|tojson }}
		    {%- endif %}
		    {%- if not loop.last %}
			{{- ", " }}
		    {%- endif %}
		{%- endfor %}
		{{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- ' [/AVAILABLE_TOOLS]' }}
            {%- endif %}
        {{- ' [INST] ' + message['content'] + ' [/INST]' }}
    {%- elif message['role'] == 'assistant' %}
        {%- if message.tool_calls is defined and message.tool_calls|length > 0 %}
            {{- ' [TOOL_CALLS] [' }}
            {%- for tool_call in message.tool_calls %}
                {{- {"name": tool_call.function.name, "arguments": tool_call.function.arguments, "id": tool_call.id}|tojson }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
            {%- endfor %}
            {{- '] ' }}
            {{- eos_token }}
    	{%- elif message.content is defined %}
	    {{- ' ' + message.content + ' ' + eos_token}}
        {%- endif %}
    {%- elif message['role'] == 'tool' %}
        {{- ' [TOOL_RESULTS] ' }}
        {{- '{"call_id": "' + message.tool_call_id + '", "content": ' + message.content|string + '}' }}
        {{- ' [/TOOL_RESULTS] ' }}
    {%- endif %}
{%- endfor %}
)tmpl";
// Qwen/Qwen2-7B-Instruct (ChatML with a default system message)
constexpr const char *kQwen2 =
    R"tmpl({% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful assistant.<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %})tmpl";
// Qwen/Qwen2.5-7B-Instruct (ChatML, with its tools branch)
constexpr const char *kQwen25 = R"tmpl({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)tmpl";
// HuggingFaceH4/zephyr-7b-beta
constexpr const char *kZephyr = R"tmpl({% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %})tmpl";
// google/gemma-2b-it, gemma-7b-it and gemma-2-9b-it (no system role; roles must alternate)
constexpr const char *kGemma =
    R"tmpl({{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '
' + message['content'] | trim + '<end_of_turn>
' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model
'}}{% endif %})tmpl";

// ---- Conversations (the variable `messages`) and tool schemas (`tools`).

// system + user + assistant + user; the assistant turn has spaces that strip()/trim remove.
constexpr const char *kConvSystem = R"json([
  {"role": "system", "content": "You are a helpful assistant."},
  {"role": "user", "content": "Hello! What is 2+2?"},
  {"role": "assistant", "content": " 2+2 is 4. "},
  {"role": "user", "content": "Thanks. And in Spanish? ¿Cuánto es?"}
])json";
// The same without the system message, for templates that reject one.
constexpr const char *kConvNoSystem = R"json([
  {"role": "user", "content": "Hello! What is 2+2?"},
  {"role": "assistant", "content": " 2+2 is 4. "},
  {"role": "user", "content": "Thanks. And in Spanish? ¿Cuánto es?"}
])json";
// Two user turns in a row: templates that check alternation raise.
constexpr const char *kConvBadOrder = R"json([
  {"role": "user", "content": "Hi"},
  {"role": "user", "content": "Are you there?"}
])json";
// A tool call and its result (OpenAI style, as transformers takes them).
constexpr const char *kConvTools = R"json([
  {"role": "system", "content": "You are a weather bot."},
  {"role": "user", "content": "What's the temperature in Paris?"},
  {"role": "assistant", "content": "", "tool_calls": [{"id": "call00001", "type": "function", "function": {"name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}}}]},
  {"role": "tool", "tool_call_id": "call00001", "name": "get_current_temperature", "content": "22.5"},
  {"role": "assistant", "content": "It is 22.5 °C in Paris."},
  {"role": "user", "content": "And in Oslo?"}
])json";
// The same without the system message.
constexpr const char *kConvToolsNoSystem = R"json([
  {"role": "user", "content": "What's the temperature in Paris?"},
  {"role": "assistant", "content": "", "tool_calls": [{"id": "call00001", "type": "function", "function": {"name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}}}]},
  {"role": "tool", "tool_call_id": "call00001", "name": "get_current_temperature", "content": "22.5"},
  {"role": "assistant", "content": "It is 22.5 °C in Paris."},
  {"role": "user", "content": "And in Oslo?"}
])json";
// One tool schema, as transformers derives it from a Python function (with "return").
constexpr const char *kTools = R"json([
  {
    "type": "function",
    "function": {
      "name": "get_current_temperature",
      "description": "Get the current temperature at a location.",
      "parameters": {
        "type": "object",
        "properties": {
          "location": {"type": "string", "description": "The location, as \"City, Country\""},
          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        },
        "required": ["location"]
      },
      "return": {"type": "number", "description": "The temperature, as a float."}
    }
  }
])json";

struct RealCase {
  const char *name;
  const char *tmpl;
  const char *conv;
  const char *tools;  // nullptr: tools is none
  bool add_generation_prompt;
  const char *bos, *eos;
  const char *date_string;  // "": undefined
  bool error;               // the template raises; `expected` is its message
  const char *expected;
};

struct SemanticCase {
  const char *tmpl;
  const char *vars;  // JSON object
  const char *expected;
};

// ---- BEGIN GENERATED by tests/reference/chat_template_oracle.py --write; do not edit ----
// clang-format off
const RealCase kRealCases[] = {
    {"llama2/system/gen", kLlama2, kConvSystem, nullptr, true, "<s>", "</s>", "", false,
     R"exp(<s>[INST] <<SYS>>
You are a helpful assistant.
<</SYS>>

Hello! What is 2+2? [/INST] 2+2 is 4. </s><s>[INST] Thanks. And in Spanish? ¿Cuánto es? [/INST])exp"},
    {"llama2/system/nogen", kLlama2, kConvSystem, nullptr, false, "<s>", "</s>", "", false,
     R"exp(<s>[INST] <<SYS>>
You are a helpful assistant.
<</SYS>>

Hello! What is 2+2? [/INST] 2+2 is 4. </s><s>[INST] Thanks. And in Spanish? ¿Cuánto es? [/INST])exp"},
    {"llama2/no-system", kLlama2, kConvNoSystem, nullptr, true, "<s>", "</s>", "", false,
     R"exp(<s>[INST] Hello! What is 2+2? [/INST] 2+2 is 4. </s><s>[INST] Thanks. And in Spanish? ¿Cuánto es? [/INST])exp"},
    {"llama2/bad-order", kLlama2, kConvBadOrder, nullptr, true, "<s>", "</s>", "", true,
     R"exp(Conversation roles must alternate user/assistant/user/assistant/...)exp"},
    {"llama3/system/gen", kLlama3, kConvSystem, nullptr, true, "<|begin_of_text|>", "<|eot_id|>", "", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hello! What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

2+2 is 4.<|eot_id|><|start_header_id|>user<|end_header_id|>

Thanks. And in Spanish? ¿Cuánto es?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)exp"},
    {"llama3/system/nogen", kLlama3, kConvSystem, nullptr, false, "<|begin_of_text|>", "<|eot_id|>", "", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hello! What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

2+2 is 4.<|eot_id|><|start_header_id|>user<|end_header_id|>

Thanks. And in Spanish? ¿Cuánto es?<|eot_id|>)exp"},
    {"llama3.1/system/gen", kLlama31, kConvSystem, nullptr, true, "<|begin_of_text|>", "<|eot_id|>", "", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hello! What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

2+2 is 4.<|eot_id|><|start_header_id|>user<|end_header_id|>

Thanks. And in Spanish? ¿Cuánto es?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)exp"},
    {"llama3.1/system/nogen", kLlama31, kConvSystem, nullptr, false, "<|begin_of_text|>", "<|eot_id|>", "", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hello! What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

2+2 is 4.<|eot_id|><|start_header_id|>user<|end_header_id|>

Thanks. And in Spanish? ¿Cuánto es?<|eot_id|>)exp"},
    {"llama3.1/no-system/date", kLlama31, kConvNoSystem, nullptr, true, "<|begin_of_text|>", "<|eot_id|>", "01 Mar 2025", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 01 Mar 2025

<|eot_id|><|start_header_id|>user<|end_header_id|>

Hello! What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

2+2 is 4.<|eot_id|><|start_header_id|>user<|end_header_id|>

Thanks. And in Spanish? ¿Cuánto es?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)exp"},
    {"llama3.1/tools", kLlama31, kConvTools, kTools, true, "<|begin_of_text|>", "<|eot_id|>", "", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You are a weather bot.<|eot_id|><|start_header_id|>user<|end_header_id|>

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.

{
    "type": "function",
    "function": {
        "name": "get_current_temperature",
        "description": "Get the current temperature at a location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The location, as \"City, Country\""
                },
                "unit": {
                    "type": "string",
                    "enum": [
                        "celsius",
                        "fahrenheit"
                    ]
                }
            },
            "required": [
                "location"
            ]
        },
        "return": {
            "type": "number",
            "description": "The temperature, as a float."
        }
    }
}

What's the temperature in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_current_temperature", "parameters": {"location": "Paris, France", "unit": "celsius"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

"22.5"<|eot_id|><|start_header_id|>assistant<|end_header_id|>

It is 22.5 °C in Paris.<|eot_id|><|start_header_id|>user<|end_header_id|>

And in Oslo?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)exp"},
    {"llama3.2/system/gen/date", kLlama32, kConvSystem, nullptr, true, "<|begin_of_text|>", "<|eot_id|>", "17 Dec 2024", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 17 Dec 2024

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hello! What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

2+2 is 4.<|eot_id|><|start_header_id|>user<|end_header_id|>

Thanks. And in Spanish? ¿Cuánto es?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)exp"},
    {"llama3.2/system/nogen/date", kLlama32, kConvSystem, nullptr, false, "<|begin_of_text|>", "<|eot_id|>", "17 Dec 2024", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 17 Dec 2024

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hello! What is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

2+2 is 4.<|eot_id|><|start_header_id|>user<|end_header_id|>

Thanks. And in Spanish? ¿Cuánto es?<|eot_id|>)exp"},
    {"llama3.2/tools/date", kLlama32, kConvTools, kTools, true, "<|begin_of_text|>", "<|eot_id|>", "17 Dec 2024", false,
     R"exp(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 17 Dec 2024

You are a weather bot.<|eot_id|><|start_header_id|>user<|end_header_id|>

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.

{
    "type": "function",
    "function": {
        "name": "get_current_temperature",
        "description": "Get the current temperature at a location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The location, as \"City, Country\""
                },
                "unit": {
                    "type": "string",
                    "enum": [
                        "celsius",
                        "fahrenheit"
                    ]
                }
            },
            "required": [
                "location"
            ]
        },
        "return": {
            "type": "number",
            "description": "The temperature, as a float."
        }
    }
}

What's the temperature in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_current_temperature", "parameters": {"location": "Paris, France", "unit": "celsius"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

"22.5"<|eot_id|><|start_header_id|>assistant<|end_header_id|>

It is 22.5 °C in Paris.<|eot_id|><|start_header_id|>user<|end_header_id|>

And in Oslo?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)exp"},
    {"mistral-v0.1/gen", kMistralV01, kConvNoSystem, nullptr, true, "<s>", "</s>", "", false,
     R"exp(<s>[INST] Hello! What is 2+2? [/INST] 2+2 is 4. </s> [INST] Thanks. And in Spanish? ¿Cuánto es? [/INST])exp"},
    {"mistral-v0.1/nogen", kMistralV01, kConvNoSystem, nullptr, false, "<s>", "</s>", "", false,
     R"exp(<s>[INST] Hello! What is 2+2? [/INST] 2+2 is 4. </s> [INST] Thanks. And in Spanish? ¿Cuánto es? [/INST])exp"},
    {"mistral-v0.1/system", kMistralV01, kConvSystem, nullptr, true, "<s>", "</s>", "", true,
     R"exp(Conversation roles must alternate user/assistant/user/assistant/...)exp"},
    {"mistral-v0.2/gen", kMistralV02, kConvNoSystem, nullptr, true, "<s>", "</s>", "", false,
     R"exp(<s>[INST] Hello! What is 2+2? [/INST] 2+2 is 4. </s>[INST] Thanks. And in Spanish? ¿Cuánto es? [/INST])exp"},
    {"mistral-v0.2/nogen", kMistralV02, kConvNoSystem, nullptr, false, "<s>", "</s>", "", false,
     R"exp(<s>[INST] Hello! What is 2+2? [/INST] 2+2 is 4. </s>[INST] Thanks. And in Spanish? ¿Cuánto es? [/INST])exp"},
    {"mistral-v0.2/bad-order", kMistralV02, kConvBadOrder, nullptr, true, "<s>", "</s>", "", true,
     R"exp(Conversation roles must alternate user/assistant/user/assistant/...)exp"},
    {"mistral-v0.3/system/gen", kMistralV03, kConvSystem, nullptr, true, "<s>", "</s>", "", false,
     R"exp(<s>[INST] Hello! What is 2+2?[/INST] 2+2 is 4.</s>[INST] You are a helpful assistant.

Thanks. And in Spanish? ¿Cuánto es?[/INST])exp"},
    {"mistral-v0.3/system/nogen", kMistralV03, kConvSystem, nullptr, false, "<s>", "</s>", "", false,
     R"exp(<s>[INST] Hello! What is 2+2?[/INST] 2+2 is 4.</s>[INST] You are a helpful assistant.

Thanks. And in Spanish? ¿Cuánto es?[/INST])exp"},
    {"mistral-v0.3/tools", kMistralV03, kConvTools, kTools, true, "<s>", "</s>", "", false,
     R"exp(<s>[INST] What's the temperature in Paris?[/INST][TOOL_CALLS] [{"name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}, "id": "call00001"}]</s>[TOOL_RESULTS] {"content": 22.5, "call_id": "call00001"}[/TOOL_RESULTS] It is 22.5 °C in Paris.</s>[AVAILABLE_TOOLS] [{"type": "function", "function": {"name": "get_current_temperature", "description": "Get the current temperature at a location.", "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The location, as \"City, Country\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}][/AVAILABLE_TOOLS][INST] You are a weather bot.

And in Oslo?[/INST])exp"},
    {"mistral-v0.3/bad-order", kMistralV03, kConvBadOrder, nullptr, true, "<s>", "</s>", "", true,
     R"exp(After the optional system message, conversation roles must alternate user/assistant/user/assistant/...)exp"},
    {"mistral-v0.3-may2024/tools", kMistralV03May2024, kConvToolsNoSystem, kTools, true, "<s>", "</s>", "", false,
     R"exp(<s> [INST] What's the temperature in Paris? [/INST] [TOOL_CALLS] [{"name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}, "id": "call00001"}] </s> [TOOL_RESULTS] {"call_id": "call00001", "content": 22.5} [/TOOL_RESULTS]  It is 22.5 °C in Paris. </s> [AVAILABLE_TOOLS] [{"type": "function", "function": {"name": "get_current_temperature", "description": "Get the current temperature at a location.", "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The location, as \"City, Country\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}] [/AVAILABLE_TOOLS] [INST] And in Oslo? [/INST])exp"},
    {"qwen2/system/gen", kQwen2, kConvSystem, nullptr, true, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
Hello! What is 2+2?<|im_end|>
<|im_start|>assistant
 2+2 is 4. <|im_end|>
<|im_start|>user
Thanks. And in Spanish? ¿Cuánto es?<|im_end|>
<|im_start|>assistant
)exp"},
    {"qwen2/system/nogen", kQwen2, kConvSystem, nullptr, false, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
Hello! What is 2+2?<|im_end|>
<|im_start|>assistant
 2+2 is 4. <|im_end|>
<|im_start|>user
Thanks. And in Spanish? ¿Cuánto es?<|im_end|>
)exp"},
    {"qwen2/no-system", kQwen2, kConvNoSystem, nullptr, true, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
Hello! What is 2+2?<|im_end|>
<|im_start|>assistant
 2+2 is 4. <|im_end|>
<|im_start|>user
Thanks. And in Spanish? ¿Cuánto es?<|im_end|>
<|im_start|>assistant
)exp"},
    {"qwen2.5/system/gen", kQwen25, kConvSystem, nullptr, true, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
Hello! What is 2+2?<|im_end|>
<|im_start|>assistant
 2+2 is 4. <|im_end|>
<|im_start|>user
Thanks. And in Spanish? ¿Cuánto es?<|im_end|>
<|im_start|>assistant
)exp"},
    {"qwen2.5/system/nogen", kQwen25, kConvSystem, nullptr, false, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
Hello! What is 2+2?<|im_end|>
<|im_start|>assistant
 2+2 is 4. <|im_end|>
<|im_start|>user
Thanks. And in Spanish? ¿Cuánto es?<|im_end|>
)exp"},
    {"qwen2.5/no-system", kQwen25, kConvNoSystem, nullptr, true, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>
<|im_start|>user
Hello! What is 2+2?<|im_end|>
<|im_start|>assistant
 2+2 is 4. <|im_end|>
<|im_start|>user
Thanks. And in Spanish? ¿Cuánto es?<|im_end|>
<|im_start|>assistant
)exp"},
    {"qwen2.5/tools", kQwen25, kConvTools, kTools, true, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are a weather bot.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_current_temperature", "description": "Get the current temperature at a location.", "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The location, as \"City, Country\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}, "return": {"type": "number", "description": "The temperature, as a float."}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
What's the temperature in Paris?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
22.5
</tool_response><|im_end|>
<|im_start|>assistant
It is 22.5 °C in Paris.<|im_end|>
<|im_start|>user
And in Oslo?<|im_end|>
<|im_start|>assistant
)exp"},
    {"qwen2.5/tools/no-system", kQwen25, kConvToolsNoSystem, kTools, false, "", "<|im_end|>", "", false,
     R"exp(<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_current_temperature", "description": "Get the current temperature at a location.", "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "The location, as \"City, Country\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}, "return": {"type": "number", "description": "The temperature, as a float."}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
What's the temperature in Paris?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
22.5
</tool_response><|im_end|>
<|im_start|>assistant
It is 22.5 °C in Paris.<|im_end|>
<|im_start|>user
And in Oslo?<|im_end|>
)exp"},
    {"zephyr/system/gen", kZephyr, kConvSystem, nullptr, true, "<s>", "</s>", "", false,
     R"exp(<|system|>
You are a helpful assistant.</s>
<|user|>
Hello! What is 2+2?</s>
<|assistant|>
 2+2 is 4. </s>
<|user|>
Thanks. And in Spanish? ¿Cuánto es?</s>
<|assistant|>
)exp"},
    {"zephyr/system/nogen", kZephyr, kConvSystem, nullptr, false, "<s>", "</s>", "", false,
     R"exp(<|system|>
You are a helpful assistant.</s>
<|user|>
Hello! What is 2+2?</s>
<|assistant|>
 2+2 is 4. </s>
<|user|>
Thanks. And in Spanish? ¿Cuánto es?</s>
)exp"},
    {"gemma/gen", kGemma, kConvNoSystem, nullptr, true, "<bos>", "<eos>", "", false,
     R"exp(<bos><start_of_turn>user
Hello! What is 2+2?<end_of_turn>
<start_of_turn>model
2+2 is 4.<end_of_turn>
<start_of_turn>user
Thanks. And in Spanish? ¿Cuánto es?<end_of_turn>
<start_of_turn>model
)exp"},
    {"gemma/nogen", kGemma, kConvNoSystem, nullptr, false, "<bos>", "<eos>", "", false,
     R"exp(<bos><start_of_turn>user
Hello! What is 2+2?<end_of_turn>
<start_of_turn>model
2+2 is 4.<end_of_turn>
<start_of_turn>user
Thanks. And in Spanish? ¿Cuánto es?<end_of_turn>
)exp"},
    {"gemma/system", kGemma, kConvSystem, nullptr, true, "<bos>", "<eos>", "", true,
     R"exp(System role not supported)exp"},
    {"gemma/bad-order", kGemma, kConvBadOrder, nullptr, true, "<bos>", "<eos>", "", true,
     R"exp(Conversation roles must alternate user/assistant/user/assistant/...)exp"},
};

const SemanticCase kSemanticCases[] = {
    {R"tmpl(plain text)tmpl",
     R"json({})json",
     R"exp(plain text)exp"},
    {R"tmpl(a{{ x }}b)tmpl",
     R"json({"x": "X"})json",
     R"exp(aXb)exp"},
    {R"tmpl([{{ missing }}])tmpl",
     R"json({})json",
     R"exp([])exp"},
    {R"tmpl({{ none }} {{ true }} {{ false }} {{ None }} {{ True }})tmpl",
     R"json({})json",
     R"exp(None True False None True)exp"},
    {R"tmpl({{ 1 + 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 * 3 - 1 }} {{ -4 }} {{ 1.5 + 1 }})tmpl",
     R"json({})json",
     R"exp(3 3 1 5 -4 2.5)exp"},
    {R"tmpl({{ 'a\nb\t"c"' }}|{{ "it's" }}|{{ 'a\qb' }}|{{ '\x41\u00e9' }})tmpl",
     R"json({})json",
     R"exp(a
b	"c"|it's|a\qb|Aé)exp"},
    {R"tmpl(a{# gone #}b)tmpl",
     R"json({})json",
     R"exp(ab)exp"},
    {R"tmpl({% if true %}
x
{% endif %}
y)tmpl",
     R"json({})json",
     R"exp(x
y)exp"},
    {R"tmpl(a
    {% if true %}
    b
    {% endif %}
c)tmpl",
     R"json({})json",
     R"exp(a
    b
c)exp"},
    {R"tmpl(a   {{- 'b' -}}   c  {%- if true -%}  d  {%- endif %})tmpl",
     R"json({})json",
     R"exp(abcd)exp"},
    {R"tmpl({{ 'a' }}
{{ 'b' }}
)tmpl",
     R"json({})json",
     R"exp(a
b)exp"},
    {R"tmpl(  {% if true %}x{% endif %}|x {% if true %}y{% endif %})tmpl",
     R"json({})json",
     R"exp(x|x y)exp"},
    {R"tmpl({{ 1 }}
  {% if true %}y{% endif %})tmpl",
     R"json({})json",
     R"exp(1
y)exp"},
    {R"tmpl({% if true +%}
x{% endif %}|  {%+ if true %}x{% endif %})tmpl",
     R"json({})json",
     R"exp(
x|  x)exp"},
    {R"tmpl(a  {#- c -#}  b|a
  {# c #}
b)tmpl",
     R"json({})json",
     R"exp(ab|a
b)exp"},
    {R"tmpl({% raw %}{{ x }}{% endraw %}
b)tmpl",
     R"json({})json",
     R"exp({{ x }}b)exp"},
    {R"tmpl({%- for m in messages -%}
  {{ m.role }}
{%- endfor %})tmpl",
     R"json({"messages": [{"role": "a"}, {"role": "b"}]})json",
     R"exp(ab)exp"},
    {R"tmpl({% for m in messages %}
  {{- m.role }}
{% endfor %})tmpl",
     R"json({"messages": [{"role": "a"}, {"role": "b"}]})json",
     R"exp(a
b
)exp"},
    {R"tmpl({% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %})tmpl",
     R"json({})json",
     R"exp(one,two,many,)exp"},
    {R"tmpl({% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %})tmpl",
     R"json({"items": ["a", "b"]})json",
     R"exp(10TrueFalse2;21FalseTrue2;)exp"},
    {R"tmpl({% for x in [1,2,3] %}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a','b') }} {% endfor %})tmpl",
     R"json({})json",
     R"exp(322a 2113b 102a )exp"},
    {R"tmpl({% for x in [] %}x{% else %}empty{% endfor %})tmpl",
     R"json({})json",
     R"exp(empty)exp"},
    {R"tmpl({% for n in [1, 2, 3, 4] %}{% if n == 2 %}{% continue %}{% endif %}{% if n == 4 %}{% break %}{% endif %}{{ n }}{% endfor %})tmpl",
     R"json({})json",
     R"exp(13)exp"},
    {R"tmpl({% for x in [1,2,3,4] if x > 1 %}{{ loop.index }}/{{ loop.length }}{{ loop.last }} {% endfor %})tmpl",
     R"json({})json",
     R"exp(1/3False 2/3False 3/3True )exp"},
    {R"tmpl({% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1,2],[3,4]] %}{{ a }}{{ b }}{% endfor %})tmpl",
     R"json({"d": {"x": 1, "y": "z"}})json",
     R"exp(x=1;y=z;1234)exp"},
    {R"tmpl({% set a = 1 %}{% for x in [1] %}{% set a = 2 %}{{ a }}{% endfor %}{{ a }}{% if true %}{% set b = 3 %}{% endif %}{{ b }})tmpl",
     R"json({})json",
     R"exp(213)exp"},
    {R"tmpl({% set a = 0 %}{% for x in [1,2] %}{{ a }}{% set a = a + 1 %}{{ a }}{% endfor %}{{ a }})tmpl",
     R"json({})json",
     R"exp(01010)exp"},
    {R"tmpl({% set ns = namespace(a=1, found=false) %}{% for x in [1,2] %}{% set ns.a = ns.a + x %}{% endfor %}{{ ns.a }}{{ ns.found }})tmpl",
     R"json({})json",
     R"exp(4False)exp"},
    {R"tmpl({% set a, b = 1, 2 %}{{ a }}{{ b }}{% set x %}abc{{ 1 }}{% endset %}[{{ x }}])tmpl",
     R"json({})json",
     R"exp(12[abc1])exp"},
    {R"tmpl({{ 1 < 2 }}{{ 2 <= 1 }}{{ 'a' == 'a' }}{{ 'a' != 'a' }}{{ 3 > 2 }}{{ 1 >= 1 }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }})tmpl",
     R"json({})json",
     R"exp(TrueFalseTrueFalseTrueTrueTrueFalse)exp"},
    {R"tmpl({{ true and false }}{{ true or false }}{{ not true }}{{ not (1 == 2) }}{{ 0 or 'x' }}{{ 1 and 'y' }})tmpl",
     R"json({})json",
     R"exp(FalseTrueFalseTruexy)exp"},
    {R"tmpl({{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in d }}{{ 'q' not in d }})tmpl",
     R"json({"d": {"k": 1}})json",
     R"exp(TrueTrueTrueTrue)exp"},
    {R"tmpl({{ x is defined }}{{ y is defined }}{{ y is not defined }}{{ n is none }}{{ s is string }})tmpl",
     R"json({"x": 1, "n": null, "s": "s"})json",
     R"exp(TrueFalseTrueTrueTrue)exp"},
    {R"tmpl({{ x is mapping }}{{ x is iterable }}{{ 1 is iterable }}{{ 'a' is sequence }}{{ 2 is even }}{{ 3 is odd }}{{ 1.0 is float }}{{ 1 is integer }}{{ true is boolean }}{{ 6 is divisibleby 3 }}{{ 1 is number }})tmpl",
     R"json({"x": {}})json",
     R"exp(TrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrue)exp"},
    {R"tmpl({{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ 'a' is in 'abc' }}{{ u is undefined }})tmpl",
     R"json({})json",
     R"exp(TrueTrueTrueTrueTrueTrue)exp"},
    {R"tmpl({{ 'yes' if flag else 'no' }}{{ 'a' if false }}|{{ ('a' if false) is defined }}{{ 1 if 0 else 2 if 1 else 3 }})tmpl",
     R"json({"flag": true})json",
     R"exp(yes|False2)exp"},
    {R"tmpl({{ 'n=' ~ 3 ~ true ~ none ~ missing ~ [1] }})tmpl",
     R"json({})json",
     R"exp(n=3TrueNone[1])exp"},
    {R"tmpl({{ xs[0] }}{{ xs[-1] }}{{ xs[1:] }}{{ xs[:2] }}{{ xs[::-1] }}{{ xs[0:3:2] }}{{ xs[-100:100] }}{{ xs[5:] }})tmpl",
     R"json({"xs": [1, 2, 3]})json",
     R"exp(13[2, 3][1, 2][3, 2, 1][1, 3][1, 2, 3][])exp"},
    {R"tmpl({{ 'hello'[1:3] }}{{ 'héllo'[1] }}{{ 'héllo'|length }}{{ 'aé☕b'[::-1] }}{{ d['k'] }}{{ d.k }}{{ d.missing }})tmpl",
     R"json({"d": {"k": "v"}})json",
     R"exp(elé5b☕éavv)exp"},
    {R"tmpl({{ x[0] }}|{{ [1][5] }}|{{ n.foo }}|)tmpl",
     R"json({"x": [], "n": null})json",
     R"exp(|||)exp"},
    {R"tmpl({{ [1, 'a', none, true, 1.5, {'k': "it's"}] }}{{ (1, 2) }}{{ () }}{{ (1,) }})tmpl",
     R"json({})json",
     R"exp([1, 'a', None, True, 1.5, {'k': "it's"}](1, 2)()(1,))exp"},
    {R"tmpl({{ 1/2 }} {{ 4/2 }} {{ 7//-2 }} {{ -7 % 3 }} {{ 2**10 }} {{ 2 ** -1 }} {{ 5.5 // 2 }} {{ -5.5 % 2 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }})tmpl",
     R"json({})json",
     R"exp(0.5 2.0 -4 2 1024 0.5 2.0 0.5 4 64)exp"},
    {R"tmpl({{ 1e20 }} {{ 0.1 + 0.2 }} {{ 1e-5 }} {{ 3.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ -0.0 }} {{ 2.5e-7 }} {{ 12345.678 }})tmpl",
     R"json({})json",
     R"exp(1e+20 0.30000000000000004 1e-05 3.0 1e+16 1000000000000000.0 0.0001 -0.0 2.5e-07 12345.678)exp"},
    {R"tmpl({{ true + 1 }} {{ true == 1 }} {{ 'a' * 3 }} {{ [1] * 2 }} {{ 3 * 'ab' }} {{ [1] + [2] }} {{ 'a' + 'b' }})tmpl",
     R"json({})json",
     R"exp(2 True aaa [1, 1] ababab [1, 2] ab)exp"},
    {R"tmpl({{ u is iterable }} {{ u|length }} {{ u|trim }}|{{ u|upper }}|{{ u == u }} {{ u|list }} {{ 'a' in u }} {{ u|default('d') }})tmpl",
     R"json({})json",
     R"exp(True 0 ||True [] False d)exp"},
    {R"tmpl({{ '  x  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'Ab'|upper }}{{ 'Ab'|lower }}|{{ xs|join('-') }}|{{ xs|first }}{{ xs|last }}|{{ 5|string }}|{{ xs|length }}{{ xs|count }})tmpl",
     R"json({"xs": [1, 2, 3]})json",
     R"exp(x|a|ABab|1-2-3|13|5|33)exp"},
    {R"tmpl({{ 'a' + ' b ' | trim + 'c' }}{{ -1|abs }})tmpl",
     R"json({})json",
     R"exp(abc1)exp"},
    {R"tmpl({{ ' x '.strip() }}{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'ab'.upper() }}{{ 'hello world'.title() }}{{ ' x '.lstrip() }}|{{ ' x '.rstrip() }})tmpl",
     R"json({})json",
     R"exp(xTrueTrueABHello Worldx | x)exp"},
    {R"tmpl({{ 'hello world-foo bar'|title }} {{ "they're bill".title() }} {{ 'hELLO'|capitalize }} {{ 'hELLO'.capitalize() }})tmpl",
     R"json({})json",
     R"exp(Hello World-Foo Bar They'Re Bill Hello Hello)exp"},
    {R"tmpl({{ ' a b  c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c '.split(None, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b c '.rsplit(None, 1) }})tmpl",
     R"json({})json",
     R"exp(['a', 'b', 'c'] ['a', 'b', '', 'c'] ['a', 'b c '] ['a,b', 'c'] [' a b', 'c'])exp"},
    {R"tmpl({{ 'abc'.replace('', '-') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'aaa'.replace('a', 'xy') }})tmpl",
     R"json({})json",
     R"exp(-a-b-c- bba xyxyxy)exp"},
    {R"tmpl({{ 'abc'.find('c') }}{{ 'aé☕b'.find('b') }}{{ 'abcabc'.count('b') }}{{ ', '.join(['a', 'b']) }}{{ 'abc'.rfind('z') }})tmpl",
     R"json({})json",
     R"exp(232a, b-1)exp"},
    {R"tmpl({{ 'a\nb\r\nc'.splitlines() }}{{ '12'.isdigit() }}{{ 'a1'.isalpha() }}{{ ' '.isspace() }})tmpl",
     R"json({})json",
     R"exp(['a', 'b', 'c']TrueFalseTrue)exp"},
    {R"tmpl({{ d.get('k') }}{{ d.get('q', 'dflt') }}{{ d.get('q') }}{{ d.keys()|list }}{{ d.values()|list }}{{ d|items|list }})tmpl",
     R"json({"d": {"k": "v"}})json",
     R"exp(vdfltNone['k']['v'][('k', 'v')])exp"},
    {R"tmpl({{ x|tojson }}|{{ x|tojson(indent=2) }})tmpl",
     R"json({"x": {"a": [1, 2, {}], "b": [], "s": "é\"\n\u0001", "f": 26.1, "n": null, "t": true}})json",
     R"exp({"a": [1, 2, {}], "b": [], "s": "é\"\n\u0001", "f": 26.1, "n": null, "t": true}|{
  "a": [
    1,
    2,
    {}
  ],
  "b": [],
  "s": "é\"\n\u0001",
  "f": 26.1,
  "n": null,
  "t": true
})exp"},
    {R"tmpl({{ x|tojson(sort_keys=true) }} {{ x|tojson(separators=(',', ':')) }} {{ x|tojson(ensure_ascii=true) }})tmpl",
     R"json({"x": {"b": "☕é😀", "a": 1.5}})json",
     R"exp({"a": 1.5, "b": "☕é😀"} {"b":"☕é😀","a":1.5} {"b": "\u2615\u00e9\ud83d\ude00", "a": 1.5})exp"},
    {R"tmpl({% for i in range(3) %}{{ i }}{% endfor %}{{ range(2, 10, 3)|list }}{{ range(5, 0, -2)|list }})tmpl",
     R"json({})json",
     R"exp(012[2, 5, 8][5, 3, 1])exp"},
    {R"tmpl({{ [3, 1, 2]|sort }} {{ [1, 2, 2]|unique|list }} {{ [1, 2]|reverse|list }} {{ 'abc'|reverse }} {{ [1, 2]|sum }} {{ [1, 3]|max }} {{ [3, 1]|min }} {{ ['b', 'A']|sort }})tmpl",
     R"json({})json",
     R"exp([1, 2, 3] [1, 2] [2, 1] cba 3 3 1 ['A', 'b'])exp"},
    {R"tmpl({{ x|map(attribute='a')|list }} {{ x|selectattr('a')|list }} {{ x|rejectattr('a', 'equalto', 1)|list }} {{ [1, 2, 3]|select('odd')|list }} {{ [1, 2, 3]|reject('gt', 1)|list }})tmpl",
     R"json({"x": [{"a": 1}, {"a": 0}, {"b": 2}]})json",
     R"exp([1, 0, Undefined] [{'a': 1}] [{'a': 0}, {'b': 2}] [1, 3] [1])exp"},
    {R"tmpl({{ x|map('upper')|join(',') }} {{ {'b': 1, 'a': 2}|dictsort }})tmpl",
     R"json({"x": ["a", "b"]})json",
     R"exp(A,B [('a', 2), ('b', 1)])exp"},
    {R"tmpl({{ 'a\nb'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(2, blank=true) }})tmpl",
     R"json({})json",
     R"exp(a
  b|  a
  b|a
  
  b)exp"},
    {R"tmpl({{ 2.5|round }} {{ 3.5|round }} {{ 2.45|round(1) }} {{ -2.5|round }} {{ 7|round }} {{ 2.675|round(2) }} {{ 3.14159|round(2, 'floor') }})tmpl",
     R"json({})json",
     R"exp(2.0 4.0 2.5 -2.0 7 2.67 3.14)exp"},
    {R"tmpl({{ 12.7|int }} {{ '12'|int }} {{ ' 12 '|int }} {{ '1.5'|int }} {{ 'x'|int }} {{ none|int }} {{ '0x1A'|int(base=16) }} {{ '1_000'|int }} {{ '3.5'|float }} {{ 'x'|float }} {{ 3|float }})tmpl",
     R"json({})json",
     R"exp(12 12 12 1 0 0 26 1000 3.5 0.0 3.0)exp"},
    {R"tmpl({{ 'x'|default('y', true) }}{{ ''|default('y', true) }}{{ ''|default('y') }}{{ none|default('z') }}{{ 'abc'|first }}{{ 'abc'|last }}{{ []|first }}|{{ [1, 2]|join }})tmpl",
     R"json({})json",
     R"exp(xyNoneac|12)exp"},
    {R"tmpl({{ 5 if x is defined else 6 }}{{ x.y is defined }}{{ {'a': 1, 'a': 2} }}{{ 'a' 'b' }})tmpl",
     R"json({"x": {}})json",
     R"exp(5False{'a': 2}ab)exp"},
    {R"tmpl({% if not tools is defined %}undef{% endif %}{% if tools is none %}none{% endif %})tmpl",
     R"json({"tools": null})json",
     R"exp(none)exp"},
    {R"tmpl({% macro f(a, b=2) %}[{{ a }}|{{ b }}]{% endmacro %}{{ f(1) }}{{ f(1, 3) }}{{ f(a=5, b=6) }})tmpl",
     R"json({})json",
     R"exp([1|2][1|3][5|6])exp"},
    {R"tmpl({% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(3) }})tmpl",
     R"json({})json",
     R"exp(321)exp"},
    {R"tmpl({% set t = 'top' %}{% macro m() %}{{ t }}{% endmacro %}{% for x in [1] %}{% set t = 'loop' %}{{ m() }}{% endfor %})tmpl",
     R"json({})json",
     R"exp(top)exp"},
    {R"tmpl({{ messages[0].content }}{{ messages[0]['role'] }})tmpl",
     R"json({"messages": [{"role": "user", "content": "hi"}]})json",
     R"exp(hiuser)exp"},
};
// clang-format on
// ---- END GENERATED ----

nlohmann::ordered_json case_variables(const RealCase &c) {
  nlohmann::ordered_json v;
  v["messages"] = nlohmann::ordered_json::parse(c.conv);
  v["tools"] = c.tools ? nlohmann::ordered_json::parse(c.tools) : nlohmann::ordered_json();
  v["documents"] = nullptr;
  v["add_generation_prompt"] = c.add_generation_prompt;
  v["bos_token"] = c.bos;
  v["eos_token"] = c.eos;
  if (*c.date_string) v["date_string"] = c.date_string;
  return v;
}

TEST(ChatTemplateReal, RendersLikeTransformers) {
  for (const RealCase &c : kRealCases) {
    SCOPED_TRACE(c.name);
    ChatTemplate t(c.tmpl);
    if (c.error) {
      try {
        t.render(case_variables(c));
        ADD_FAILURE() << "expected the template to raise: " << c.expected;
      } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), std::string("chat template: ") + c.expected);
      }
    } else {
      EXPECT_EQ(t.render(case_variables(c)), c.expected);
    }
  }
}

// apply() passes what transformers passes, so plain conversations give the same strings.
TEST(ChatTemplateReal, ApplyMatchesRender) {
  int checked = 0;
  for (const RealCase &c : kRealCases) {
    if (c.tools || c.error) continue;
    SCOPED_TRACE(c.name);
    std::vector<ChatMessage> messages;
    for (const auto &m : nlohmann::ordered_json::parse(c.conv))
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    ChatTemplateOptions opt;
    opt.date_string = c.date_string;
    ChatTemplate t(c.tmpl);
    EXPECT_EQ(t.apply(messages, c.add_generation_prompt, c.bos, c.eos, opt), c.expected);
    if (!*c.date_string) {
      EXPECT_EQ(t.apply(messages, c.add_generation_prompt, c.bos, c.eos), c.expected);
    }
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

TEST(ChatTemplateReal, ToolsThroughApplyOptions) {
  for (const RealCase &c : kRealCases) {
    if (!c.tools || c.error || std::string(c.conv) != kConvToolsNoSystem) continue;
    SCOPED_TRACE(c.name);
    // A conversation with tool calls needs render(); apply() carries the tool schemas alone.
    ChatTemplateOptions opt;
    opt.tools_json = c.tools;
    std::vector<ChatMessage> messages = {{"user", "What's the temperature in Paris?"}};
    std::string out = ChatTemplate(c.tmpl).apply(messages, true, c.bos, c.eos, opt);
    EXPECT_NE(out.find("get_current_temperature"), std::string::npos) << out;
  }
}

TEST(ChatTemplateSemantics, MatchesJinja) {
  for (const SemanticCase &c : kSemanticCases) {
    SCOPED_TRACE(c.tmpl);
    EXPECT_EQ(ChatTemplate(c.tmpl).render(nlohmann::ordered_json::parse(c.vars)), c.expected);
  }
}

// Without date_string, Llama 3.2 asks strftime_now for today's date ("%d %b %Y").
TEST(ChatTemplateReal, Llama32DefaultsToToday) {
  std::vector<ChatMessage> messages = {{"user", "Hi"}};
  std::string before, after, out;
  auto today = [] {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    return std::string(buf, std::strftime(buf, sizeof(buf), "%d %b %Y", &tm));
  };
  before = today();
  out = ChatTemplate(kLlama32).apply(messages, true, "<|begin_of_text|>", "<|eot_id|>");
  after = today();
  bool found = out.find("Today Date: " + before + "\n") != std::string::npos ||
               out.find("Today Date: " + after + "\n") != std::string::npos;
  EXPECT_TRUE(found) << out;
  // Llama 3.1 has no strftime_now branch and keeps its fixed default.
  out = ChatTemplate(kLlama31).apply(messages, true, "<|begin_of_text|>", "<|eot_id|>");
  EXPECT_NE(out.find("Today Date: 26 Jul 2024\n"), std::string::npos) << out;
}

// A parsed template is immutable; renders of it may run on several threads at once.
TEST(ChatTemplateReal, ConcurrentRenders) {
  const ChatTemplate t(kQwen25);
  std::vector<std::string> results(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 50; ++k) {
        std::vector<ChatMessage> msgs = {{"user", "thread " + std::to_string(i)}};
        results[i] = t.apply(msgs, true, "", "<|im_end|>");
      }
    });
  }
  for (auto &th : threads) th.join();
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i],
              "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
              "assistant.<|im_end|>\n<|im_start|>user\nthread " +
                  std::to_string(i) + "<|im_end|>\n<|im_start|>assistant\n");
  }
}

}  // namespace

// The real templates, for the robustness test in test_chat_template.cpp.
std::vector<std::pair<std::string, std::string>> chat_template_test_sources() {
  return {{"llama2", kLlama2},
          {"llama3", kLlama3},
          {"llama3.1", kLlama31},
          {"llama3.2", kLlama32},
          {"mistral-v0.1", kMistralV01},
          {"mistral-v0.2", kMistralV02},
          {"mistral-v0.3", kMistralV03},
          {"mistral-v0.3-may2024", kMistralV03May2024},
          {"qwen2", kQwen2},
          {"qwen2.5", kQwen25},
          {"zephyr", kZephyr},
          {"gemma", kGemma}};
}

std::string chat_template_test_conversation() {
  return kConvTools;
}
std::string chat_template_test_tools() {
  return kTools;
}

}  // namespace lmkit
