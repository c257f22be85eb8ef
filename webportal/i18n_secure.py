"""German and French for the secure page and the sender's view of it (merged into
webportal.i18n.CATALOGS)."""

from __future__ import annotations

DE: dict[str, str] = {
    "+{days} days": "+{days} Tage",
    "A revoked or deleted link cannot be extended.": (
        "Ein widerrufener oder gelöschter Link kann nicht verlängert werden."
    ),
    "Actions": "Aktionen",
    "Answer {sender}": "{sender} antworten",
    "At most {size} in all.": "Höchstens {size} insgesamt.",
    "Attachments": "Anhänge",
    "Back to the secure-page messages": "Zurück zu den Nachrichten über sichere Seiten",
    "Cc": "Kopie",
    "Choose a number of days within the allowed range.": (
        "Wählen Sie eine Anzahl Tage im erlaubten Bereich."
    ),
    "Days": "Tage",
    "Encrypted message": "Verschlüsselte Nachricht",
    "Enter the password.": "Geben Sie das Passwort ein.",
    "Extend": "Verlängern",
    'For the message "{subject}". The old password stops working; every link that is not'
    " revoked opens with the new one, and so does your Sent copy.": (
        "Für die Nachricht „{subject}“. Das alte Passwort gilt dann nicht mehr; jeder nicht"
        " widerrufene Link öffnet mit dem neuen, ebenso Ihre Kopie unter „Gesendet“."
    ),
    "Enter the message's current password.": "Geben Sie das aktuelle Passwort der Nachricht ein.",
    "Only the current password opens the message: the server cannot, so it cannot seal it again"
    " without it.": (
        "Nur das aktuelle Passwort öffnet die Nachricht; der Server kann es nicht und sie daher"
        " ohne dieses Passwort nicht neu versiegeln."
    ),
    "Open": "Öffnen",
    "Password of the message": "Passwort der Nachricht",
    "Sealed with the message's password, like its secure pages.": (
        "Mit dem Passwort der Nachricht versiegelt, wie ihre sicheren Seiten."
    ),
    "The current password is wrong.": "Das aktuelle Passwort ist falsch.",
    "This message went to recipients through secure pages. Your copy is sealed with the same"
    " password, so that only the password opens it: not even this server can read it.": (
        "Diese Nachricht ging über sichere Seiten an Empfänger. Ihre Kopie ist mit demselben"
        " Passwort versiegelt, damit nur das Passwort sie öffnet: selbst dieser Server kann sie"
        " nicht lesen."
    ),
    "If you still need the message, ask the sender to send it again.": (
        "Wenn Sie die Nachricht noch brauchen, bitten Sie den Absender, sie erneut zu senden."
    ),
    "Leave both empty and a strong password is made for you.": (
        "Lassen Sie beide Felder leer, dann wird ein starkes Passwort für Sie erzeugt."
    ),
    "Messages you sent to recipients without a key. Each recipient has a link of their own.": (
        "Nachrichten, die Sie an Empfänger ohne Schlüssel gesendet haben. Jeder Empfänger hat"
        " einen eigenen Link."
    ),
    "Open the message": "Nachricht öffnen",
    "Opened": "Geöffnet",
    "Please enter the password again.": "Bitte geben Sie das Passwort erneut ein.",
    "Please enter the password again. Your answer is kept, not sent: it is back in its"
    " form once the message is open.": (
        "Bitte geben Sie das Passwort erneut ein. Ihre Antwort ist aufbewahrt, nicht"
        " gesendet: Sie steht wieder in ihrem Formular, sobald die Nachricht offen ist."
    ),
    "Your answer is not sent yet: check it and send it.": (
        "Ihre Antwort ist noch nicht gesendet: Prüfen Sie sie und senden Sie sie."
    ),
    "The server is busy right now; your answer was not sent. Please try again in a minute.": (
        "Der Server ist gerade ausgelastet; Ihre Antwort wurde nicht gesendet. Bitte versuchen"
        " Sie es in einer Minute noch einmal."
    ),
    "Recipient": "Empfänger",
    "Repeat the new password": "Neues Passwort wiederholen",
    "Secure-page messages": "Nachrichten über sichere Seiten",
    "Send encrypted answer": "Verschlüsselt antworten",
    "Sent {date}": "Gesendet am {date}",
    "Set a new password": "Neues Passwort festlegen",
    "Set the password": "Passwort festlegen",
    "State": "Status",
    "The answer cannot be delivered right now.": (
        "Die Antwort kann gerade nicht zugestellt werden."
    ),
    "The answer is too large.": "Die Antwort ist zu groß.",
    "The answer could not be written.": "Die Antwort konnte nicht geschrieben werden.",
    "The message is closed. Its password opens it again.": (
        "Die Nachricht ist geschlossen. Ihr Passwort öffnet sie wieder."
    ),
    "Close the message": "Nachricht schließen",
    "On a shared computer, close it when you are done.": (
        "Schließen Sie sie an einem geteilten Computer, wenn Sie fertig sind."
    ),
    "The encrypted message has been deleted.": "Die verschlüsselte Nachricht wurde gelöscht.",
    "The link for {recipient} now works until {date}.": (
        "Der Link für {recipient} gilt jetzt bis {date}."
    ),
    "The link for {recipient} was revoked.": "Der Link für {recipient} wurde widerrufen.",
    "The link may be incomplete, or it has expired, been locked or been withdrawn by the sender.": (
        "Der Link ist vielleicht unvollständig, abgelaufen, gesperrt oder vom Absender widerrufen."
    ),
    'The message "{subject}" now opens with this password:': (
        "Die Nachricht „{subject}“ öffnet jetzt mit diesem Passwort:"
    ),
    "The message changed meanwhile; please try again.": (
        "Die Nachricht wurde inzwischen geändert; bitte versuchen Sie es noch einmal."
    ),
    "The message has a new password. Every link that was not revoked works with it (locked"
    " links are unlocked).": (
        "Die Nachricht hat ein neues Passwort. Jeder nicht widerrufene Link funktioniert damit"
        " (gesperrte Links sind entsperrt)."
    ),
    "The password is too long.": "Das Passwort ist zu lang.",
    "The password is wrong. After too many wrong passwords the link is locked.": (
        "Das Passwort ist falsch. Nach zu vielen falschen Passwörtern wird der Link gesperrt."
    ),
    "The password must have at least {length} characters.": (
        "Das Passwort muss mindestens {length} Zeichen haben."
    ),
    "The two passwords are not the same.": "Die beiden Passwörter stimmen nicht überein.",
    "There is no such link.": "Diesen Link gibt es nicht.",
    "There is no such message.": "Diese Nachricht gibt es nicht.",
    "This link cannot send more answers.": (
        "Über diesen Link können keine Antworten mehr gesendet werden."
    ),
    "This link is already at its latest possible expiry.": (
        "Dieser Link gilt bereits so lange wie möglich."
    ),
    "This link is not available": "Dieser Link ist nicht verfügbar",
    "This page only ever asks for the password of this message. Never enter your e-mail"
    " password here.": (
        "Diese Seite fragt nur nach dem Passwort dieser Nachricht. Geben Sie hier nie Ihr"
        " E-Mail-Passwort ein."
    ),
    "This page works until {date}.": "Diese Seite ist bis {date} erreichbar.",
    "Works until": "Gültig bis",
    "Write an answer or attach a file.": (
        "Schreiben Sie eine Antwort oder hängen Sie eine Datei an."
    ),
    "Write it down now: it is shown only once and stored nowhere. Give it to the recipients"
    " another way than e-mail.": (
        "Notieren Sie es jetzt: Es wird nur einmal angezeigt und nirgends gespeichert. Teilen"
        " Sie es den Empfängern auf anderem Weg als per E-Mail mit."
    ),
    "You have not sent any message through a secure page.": (
        "Sie haben noch keine Nachricht über eine sichere Seite gesendet."
    ),
    "Your answer": "Ihre Antwort",
    "Your answer is encrypted and reaches {sender} only.": (
        "Ihre Antwort wird verschlüsselt und erreicht nur {sender}."
    ),
    "Your answer was sent, encrypted.": "Ihre Antwort wurde verschlüsselt gesendet.",
    "active": "aktiv",
    "deleted": "gelöscht",
    "expired": "abgelaufen",
    "first {date}": "zuerst {date}",
    "last {date}": "zuletzt {date}",
    "locked": "gesperrt",
    "not opened": "nicht geöffnet",
    "revoked": "widerrufen",
    "answered {count}×": "{count}× beantwortet",
    "{sender} sent you an encrypted message. Enter the password you received from them.": (
        "{sender} hat Ihnen eine verschlüsselte Nachricht gesendet. Geben Sie das Passwort ein,"
        " das Sie von dort erhalten haben."
    ),
}

FR: dict[str, str] = {
    "+{days} days": "+{days} jours",
    "A revoked or deleted link cannot be extended.": (
        "Un lien révoqué ou supprimé ne peut pas être prolongé."
    ),
    "Actions": "Actions",
    "Answer {sender}": "Répondre à {sender}",
    "At most {size} in all.": "{size} au plus au total.",
    "Attachments": "Pièces jointes",
    "Back to the secure-page messages": "Retour aux messages par page sécurisée",
    "Cc": "Cc",
    "Choose a number of days within the allowed range.": (
        "Choisissez un nombre de jours dans la plage autorisée."
    ),
    "Days": "Jours",
    "Encrypted message": "Message chiffré",
    "Enter the password.": "Saisissez le mot de passe.",
    "Extend": "Prolonger",
    'For the message "{subject}". The old password stops working; every link that is not'
    " revoked opens with the new one, and so does your Sent copy.": (
        "Pour le message « {subject} ». L'ancien mot de passe ne fonctionnera plus ; chaque"
        " lien non révoqué s'ouvrira avec le nouveau, tout comme votre copie dans « Envoyés »."
    ),
    "Enter the message's current password.": "Saisissez le mot de passe actuel du message.",
    "Only the current password opens the message: the server cannot, so it cannot seal it again"
    " without it.": (
        "Seul le mot de passe actuel ouvre le message : le serveur ne le peut pas et ne peut donc"
        " pas le resceller sans lui."
    ),
    "Open": "Ouvrir",
    "Password of the message": "Mot de passe du message",
    "Sealed with the message's password, like its secure pages.": (
        "Scellé avec le mot de passe du message, comme ses pages sécurisées."
    ),
    "The current password is wrong.": "Le mot de passe actuel est incorrect.",
    "This message went to recipients through secure pages. Your copy is sealed with the same"
    " password, so that only the password opens it: not even this server can read it.": (
        "Ce message a été remis à des destinataires par des pages sécurisées. Votre copie est"
        " scellée avec le même mot de passe, afin que seul ce mot de passe l'ouvre : même ce"
        " serveur ne peut pas la lire."
    ),
    "If you still need the message, ask the sender to send it again.": (
        "Si vous avez encore besoin du message, demandez à l'expéditeur de le renvoyer."
    ),
    "Leave both empty and a strong password is made for you.": (
        "Laissez les deux champs vides pour qu'un mot de passe robuste soit créé pour vous."
    ),
    "Messages you sent to recipients without a key. Each recipient has a link of their own.": (
        "Messages envoyés à des destinataires sans clé. Chaque destinataire a son propre lien."
    ),
    "Open the message": "Ouvrir le message",
    "Opened": "Ouvert",
    "Please enter the password again.": "Veuillez saisir à nouveau le mot de passe.",
    "Please enter the password again. Your answer is kept, not sent: it is back in its"
    " form once the message is open.": (
        "Veuillez saisir à nouveau le mot de passe. Votre réponse est conservée, non"
        " envoyée : elle revient dans son formulaire dès que le message est ouvert."
    ),
    "Your answer is not sent yet: check it and send it.": (
        "Votre réponse n'est pas encore envoyée : vérifiez-la et envoyez-la."
    ),
    "The server is busy right now; your answer was not sent. Please try again in a minute.": (
        "Le serveur est occupé en ce moment ; votre réponse n’a pas été envoyée. Veuillez"
        " réessayer dans une minute."
    ),
    "Recipient": "Destinataire",
    "Repeat the new password": "Répétez le nouveau mot de passe",
    "Secure-page messages": "Messages par page sécurisée",
    "Send encrypted answer": "Envoyer une réponse chiffrée",
    "Sent {date}": "Envoyé le {date}",
    "Set a new password": "Définir un nouveau mot de passe",
    "Set the password": "Définir le mot de passe",
    "State": "État",
    "The answer cannot be delivered right now.": (
        "La réponse ne peut pas être distribuée pour le moment."
    ),
    "The answer is too large.": "La réponse est trop volumineuse.",
    "The answer could not be written.": "La réponse n'a pas pu être écrite.",
    "The message is closed. Its password opens it again.": (
        "Le message est fermé. Son mot de passe l'ouvre à nouveau."
    ),
    "Close the message": "Fermer le message",
    "On a shared computer, close it when you are done.": (
        "Sur un ordinateur partagé, fermez-le quand vous avez terminé."
    ),
    "The encrypted message has been deleted.": "Le message chiffré a été supprimé.",
    "The link for {recipient} now works until {date}.": (
        "Le lien pour {recipient} fonctionne désormais jusqu'au {date}."
    ),
    "The link for {recipient} was revoked.": "Le lien pour {recipient} a été révoqué.",
    "The link may be incomplete, or it has expired, been locked or been withdrawn by the sender.": (
        "Le lien est peut-être incomplet, expiré, bloqué ou retiré par l'expéditeur."
    ),
    'The message "{subject}" now opens with this password:': (
        "Le message « {subject} » s'ouvre désormais avec ce mot de passe :"
    ),
    "The message changed meanwhile; please try again.": (
        "Le message a changé entre-temps ; veuillez réessayer."
    ),
    "The message has a new password. Every link that was not revoked works with it (locked"
    " links are unlocked).": (
        "Le message a un nouveau mot de passe. Chaque lien non révoqué fonctionne avec lui"
        " (les liens bloqués sont débloqués)."
    ),
    "The password is too long.": "Le mot de passe est trop long.",
    "The password is wrong. After too many wrong passwords the link is locked.": (
        "Le mot de passe est incorrect. Après trop d'erreurs, le lien est bloqué."
    ),
    "The password must have at least {length} characters.": (
        "Le mot de passe doit comporter au moins {length} caractères."
    ),
    "The two passwords are not the same.": "Les deux mots de passe ne sont pas identiques.",
    "There is no such link.": "Ce lien n'existe pas.",
    "There is no such message.": "Ce message n'existe pas.",
    "This link cannot send more answers.": "Ce lien ne peut plus envoyer de réponses.",
    "This link is already at its latest possible expiry.": (
        "Ce lien est déjà valable le plus longtemps possible."
    ),
    "This link is not available": "Ce lien n'est pas disponible",
    "This page only ever asks for the password of this message. Never enter your e-mail"
    " password here.": (
        "Cette page ne demande que le mot de passe de ce message. N'y saisissez jamais le mot"
        " de passe de votre messagerie."
    ),
    "This page works until {date}.": "Cette page est accessible jusqu'au {date}.",
    "Works until": "Valable jusqu'au",
    "Write an answer or attach a file.": "Écrivez une réponse ou joignez un fichier.",
    "Write it down now: it is shown only once and stored nowhere. Give it to the recipients"
    " another way than e-mail.": (
        "Notez-le maintenant : il n'est affiché qu'une fois et n'est enregistré nulle part."
        " Communiquez-le aux destinataires autrement que par e-mail."
    ),
    "You have not sent any message through a secure page.": (
        "Vous n'avez encore envoyé aucun message par page sécurisée."
    ),
    "Your answer": "Votre réponse",
    "Your answer is encrypted and reaches {sender} only.": (
        "Votre réponse est chiffrée et ne parvient qu'à {sender}."
    ),
    "Your answer was sent, encrypted.": "Votre réponse a été envoyée, chiffrée.",
    "active": "actif",
    "deleted": "supprimé",
    "expired": "expiré",
    "first {date}": "première fois {date}",
    "last {date}": "dernière fois {date}",
    "locked": "bloqué",
    "not opened": "pas ouvert",
    "revoked": "révoqué",
    "answered {count}×": "{count} réponse(s)",
    "{sender} sent you an encrypted message. Enter the password you received from them.": (
        "{sender} vous a envoyé un message chiffré. Saisissez le mot de passe que vous avez"
        " reçu de sa part."
    ),
}
